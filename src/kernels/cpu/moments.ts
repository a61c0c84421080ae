/**
 * Mean and biased variance per (set, group) in float64 (./layout.ts), the precision
 * contract of the fused cpu kernels and of recalibrateStatistics: accurate
 * (to float64 rounding of float32 inputs) even when the mean dwarfs the spread.
 */
import {firstStatistic, Layout, sampleSize, valuesPerStatistic} from './layout';

export interface Moments {
  mean: Float64Array;
  /** Biased variance (divided by the count). */
  variance: Float64Array;
}

/** Values per block of a channels-last sample that the pass walks column by column (32 KB). */
const BLOCK = 8192;
/** Rows per block at least: a shorter column run would not pay for its call. */
const MIN_BLOCK_ROWS = 8;

/**
 * One pass of float64 sums of x − shift and (x − shift)², with the shift one
 * of the group's own values (its first), so that
 * var = (Σ(x − shift)² − (Σ(x − shift))²/n)/n does not cancel: |μ − shift| is
 * a few σ, not |μ|.
 */
export function moments(x: Float32Array, layout: Layout): Moments {
  const {samples, rows, channels, inner, sets, groups, groupSize, groupOf} = layout;
  const statistics = sets * groups;
  const shift = new Float64Array(statistics);
  // Sample `set` is the first of its set.
  const blockSize = sampleSize(layout);
  for (let set = 0; set < sets; set++) {
    for (let group = 0; group < groups; group++) {
      shift[set * groups + group] = x[set * blockSize + group * groupSize * inner];
    }
  }
  const sum = new Float64Array(statistics);
  const sumSquares = new Float64Array(statistics);
  if (inner === 1 && rows > 1) {
    // Channels-last: one channel at a time down a cache-sized block of rows,
    // so the sums stay in registers (row by row they would live in memory).
    // Neighbouring channels share cache lines, so a block wider than the cache
    // (ghost batches as merged channels) still keeps its rows' lines in L1.
    const blockRows = Math.max(MIN_BLOCK_ROWS, Math.floor(BLOCK / channels));
    for (let sample = 0; sample < samples; sample++) {
      const sampleEnd = (sample + 1) * rows * channels;
      const first = firstStatistic(layout, sample);
      for (let start = sample * rows * channels; start < sampleEnd; start += blockRows * channels) {
        const end = Math.min(sampleEnd, start + blockRows * channels);
        for (let c = 0; c < channels; c++) {
          const stat = first + groupOf[c];
          addShiftedSums(x, start + c, end, channels, shift[stat], sum, sumSquares, stat);
        }
      }
    }
  } else {
    // Otherwise a group's values in one row are one contiguous run: its channels times inner.
    const run = groupSize * inner;
    for (let sample = 0, i = 0; sample < samples; sample++) {
      const first = firstStatistic(layout, sample);
      for (let row = 0; row < rows; row++) {
        for (let stat = first; stat < first + groups; stat++, i += run) {
          addShiftedSums(x, i, i + run, 1, shift[stat], sum, sumSquares, stat);
        }
      }
    }
  }
  const count = valuesPerStatistic(layout);
  const mean = new Float64Array(statistics);
  const variance = new Float64Array(statistics);
  for (let stat = 0; stat < statistics; stat++) {
    mean[stat] = shift[stat] + sum[stat] / count;
    // Rounding can take it just below 0 when a group's values are (nearly) all equal.
    variance[stat] = Math.max(0, (sumSquares[stat] - sum[stat] * sum[stat] / count) / count);
  }
  return {mean, variance};
}

/** Adds Σ (x[i] − shift) and Σ (x[i] − shift)² over i = start, start + step, … < end to sum[stat], sumSquares[stat]. */
function addShiftedSums(x: Float32Array, start: number, end: number, step: number, shift: number,
    sum: Float64Array, sumSquares: Float64Array, stat: number): void {
  // Two chains of sums: the adds' latency, not memory, bounds a single chain.
  let sum0 = 0;
  let squares0 = 0;
  let sum1 = 0;
  let squares1 = 0;
  let i = start;
  for (; i + step < end; i += 2 * step) {
    const d0 = x[i] - shift;
    const d1 = x[i + step] - shift;
    sum0 += d0;
    squares0 += d0 * d0;
    sum1 += d1;
    squares1 += d1 * d1;
  }
  if (i < end) {
    const d = x[i] - shift;
    sum0 += d;
    squares0 += d * d;
  }
  sum[stat] += sum0 + sum1;
  sumSquares[stat] += squares0 + squares1;
}
