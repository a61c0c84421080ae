/**
 * The input gradient of a normalization and the sums behind its parameter
 * gradients, in two passes (sums, then dx), float64 arithmetic.
 *
 * With g = γ·r per channel (batch renorm's r, held constant as in Keras; 1
 * otherwise), σ = √(var + ε) and means over each (set, group) of n values
 * (./layout.ts):
 *   dx = (1/σ)·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂))
 *        + ∂L/∂mean/n + ∂L/∂var·2(x − μ)/n      (when the statistics are used)
 * which is dx = dy·dyScale + x·xScale + offset with per-channel coefficients.
 */
import {float64} from './forward';
import {firstStatistic, Layout, sampleSize, valuesPerStatistic} from './layout';

export interface GradientInputs {
  dy: Float32Array;
  x: Float32Array;
  /** Per (set, group). */
  mean: Float32Array;
  /** Biased variance per (set, group). */
  variance: Float32Array;
  gamma: Float32Array;
  /** Batch renorm's r per channel; null is 1. */
  r: Float32Array | null;
  /** Upstream gradients of the mean and variance outputs per (set, group); null is 0. */
  meanGrad: Float32Array | null;
  varianceGrad: Float32Array | null;
}

export interface NormalizationGradient {
  dx: Float32Array;
  /** Σ dy per channel. */
  channelDy: Float64Array;
  /** Σ dy·x̂ = Σ dy·(x − μ)/σ per channel. */
  channelDyXhat: Float64Array;
}

/** Adds Σ dy and Σ dy·(x − center) per channel over one sample's block to sumDy and sumDyCentered. */
function gradientSumsPass(dy: Float32Array, x: Float32Array, start: number, layout: Layout, center: Float64Array,
    sumDy: Float64Array, sumDyCentered: Float64Array): void {
  const {rows, channels, inner} = layout;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) {
        sumDy[c] += dy[i];
        sumDyCentered[c] += dy[i] * (x[i] - center[c]);
      }
      continue;
    }
    for (let c = 0; c < channels; c++) {
      const channelCenter = center[c];
      let runDy = 0;
      let runDyCentered = 0;
      for (const end = i + inner; i < end; i++) {
        runDy += dy[i];
        runDyCentered += dy[i] * (x[i] - channelCenter);
      }
      sumDy[c] += runDy;
      sumDyCentered[c] += runDyCentered;
    }
  }
}

/** out = dy·dyScale[c] + x·xScale[c] + offset[c] over one sample's block starting at `start`. */
function inputGradientPass(dy: Float32Array, x: Float32Array, out: Float32Array, start: number, layout: Layout,
    dyScale: Float64Array, xScale: Float64Array, offset: Float64Array): void {
  const {rows, channels, inner} = layout;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) out[i] = dy[i] * dyScale[c] + x[i] * xScale[c] + offset[c];
      continue;
    }
    for (let c = 0; c < channels; c++) {
      // Hoisted: V8 would reload them for every value.
      const channelDyScale = dyScale[c];
      const channelXScale = xScale[c];
      const channelOffset = offset[c];
      for (const end = i + inner; i < end; i++) out[i] = dy[i] * channelDyScale + x[i] * channelXScale + channelOffset;
    }
  }
}

export function normalizationGradient(inputs: GradientInputs, layout: Layout, epsilon: number): NormalizationGradient {
  const {dy, x, r, meanGrad, varianceGrad} = inputs;
  const {samples, rows, channels, inner, sets, groups, groupSize} = layout;
  const count = valuesPerStatistic(layout);
  const gain = float64(inputs.gamma);
  if (r != null) for (let c = 0; c < channels; c++) gain[c] *= r[c];
  const mean = float64(inputs.mean);
  const invStd = float64(inputs.variance, (v) => 1 / Math.sqrt(v + epsilon));
  const dx = new Float32Array(x.length);
  const channelDy = new Float64Array(channels);
  const channelDyXhat = new Float64Array(channels);
  // Per (set, group), from Σ g·dy and Σ g·dy·(x − μ) over it: dx = dy·g/σ + (x − μ)·centeredScale + constant,
  // centeredScale = −Σ g·dy·(x − μ)/(n·σ³) + 2·∂L/∂var/n, constant = −Σ g·dy/(n·σ) + ∂L/∂mean/n.
  const centeredScaleOf = (stat: number, groupDyCentered: number) => {
    const statInvStd = invStd[stat];
    return -statInvStd * statInvStd * statInvStd * groupDyCentered / count +
      (varianceGrad == null ? 0 : 2 * varianceGrad[stat] / count);
  };
  const constantOf = (stat: number, groupDy: number) =>
    -invStd[stat] * groupDy / count + (meanGrad == null ? 0 : meanGrad[stat] / count);
  if (rows * inner === 1 && sets === samples) {
    // One value per (sample, channel), as in a [N, C] input, and statistics per sample: each group is one contiguous run.
    for (let sample = 0, groupStart = 0; sample < samples; sample++) {
      for (let stat = sample * groups, first = 0; stat < (sample + 1) * groups; stat++, first += groupSize,
        groupStart += groupSize) {
        const statMean = mean[stat];
        const statInvStd = invStd[stat];
        let groupDy = 0;
        let groupDyCentered = 0;
        for (let c = first, i = groupStart; c < first + groupSize; c++, i++) {
          groupDy += gain[c] * dy[i];
          groupDyCentered += gain[c] * dy[i] * (x[i] - statMean);
          channelDy[c] += dy[i];
          channelDyXhat[c] += dy[i] * (x[i] - statMean) * statInvStd;
        }
        const centeredScale = centeredScaleOf(stat, groupDyCentered);
        const constant = constantOf(stat, groupDy);
        for (let c = first, i = groupStart; c < first + groupSize; c++, i++) {
          dx[i] = dy[i] * gain[c] * statInvStd + (x[i] - statMean) * centeredScale + constant;
        }
      }
    }
    return {dx, channelDy, channelDyXhat};
  }
  // A round is a run of samples whose statistics no sample outside it shares: one sample when each
  // has its own (group norm; batch norm's one block), so its block is walked twice while in cache;
  // all samples for ghost batches, whose statistics are shared by samples N/v apart. Per round, the
  // sums of each of its sets, then their coefficients, then dx. Scratch per (set in round, channel).
  const roundSamples = sets === samples ? 1 : samples;
  const roundSets = sets === samples ? 1 : sets;
  const [center, sumDy, sumDyCentered, dyScale, xScale, offset] =
      Array.from({length: 6}, () => new Float64Array(roundSets * channels));
  const slotOf = (sample: number) => (sample % sets) % roundSets;
  const slice = (values: Float64Array, sample: number) =>
    values.subarray(slotOf(sample) * channels, (slotOf(sample) + 1) * channels);
  for (let roundStart = 0; roundStart < samples; roundStart += roundSamples) {
    const roundEnd = roundStart + roundSamples;
    sumDy.fill(0);
    sumDyCentered.fill(0);
    // Sample roundStart + slot is the first of the slot's set.
    for (let slot = 0; slot < roundSets; slot++) {
      const first = firstStatistic(layout, roundStart + slot);
      for (let c = 0; c < channels; c++) center[slot * channels + c] = mean[first + layout.groupOf[c]];
    }
    for (let sample = roundStart; sample < roundEnd; sample++) {
      gradientSumsPass(dy, x, sample * sampleSize(layout), layout, slice(center, sample), slice(sumDy, sample),
          slice(sumDyCentered, sample));
    }
    for (let slot = 0; slot < roundSets; slot++) {
      const firstStat = firstStatistic(layout, roundStart + slot);
      for (let stat = firstStat, first = slot * channels; stat < firstStat + groups; stat++, first += groupSize) {
        let groupDy = 0;
        let groupDyCentered = 0;
        for (let k = first; k < first + groupSize; k++) {
          const c = k - slot * channels;
          groupDy += gain[c] * sumDy[k];
          groupDyCentered += gain[c] * sumDyCentered[k];
          channelDy[c] += sumDy[k];
          channelDyXhat[c] += sumDyCentered[k] * invStd[stat];
        }
        const centeredScale = centeredScaleOf(stat, groupDyCentered);
        // (x − μ)·centeredScale + constant = x·centeredScale + (constant − μ·centeredScale).
        const constant = constantOf(stat, groupDy) - mean[stat] * centeredScale;
        for (let k = first; k < first + groupSize; k++) {
          dyScale[k] = gain[k - slot * channels] * invStd[stat];
          xScale[k] = centeredScale;
          offset[k] = constant;
        }
      }
    }
    for (let sample = roundStart; sample < roundEnd; sample++) {
      inputGradientPass(dy, x, dx, sample * sampleSize(layout), layout, slice(dyScale, sample), slice(xScale, sample),
          slice(offset, sample));
    }
  }
  return {dx, channelDy, channelDyXhat};
}
