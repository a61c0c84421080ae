/**
 * The output passes of the fused forward kernels, in float64 arithmetic on
 * float32 values. They work one sample at a time (a contiguous block of
 * rows × channels × inner values) with coefficients folded per channel for
 * it, so the scratch is per channel and each pass reads x once.
 */
import {firstStatistic, Layout, sampleSize} from './layout';

/**
 * out = x·scale[k + c] + offset[k + c] over one sample's block starting at
 * `start`, k = `coefficientStart` (where the sample's set begins in scale and offset).
 */
export function scaleOffsetPass(x: Float32Array, out: Float32Array, start: number, layout: Layout,
    scale: Float64Array, offset: Float64Array, coefficientStart = 0): void {
  const {rows, channels, inner} = layout;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0, k = coefficientStart; c < channels; c++, i++, k++) out[i] = x[i] * scale[k] + offset[k];
      continue;
    }
    for (let c = coefficientStart; c < coefficientStart + channels; c++) {
      // Hoisted: V8 would reload them for every value.
      const channelScale = scale[c];
      const channelOffset = offset[c];
      for (const end = i + inner; i < end; i++) out[i] = x[i] * channelScale + channelOffset;
    }
  }
}

/** A float64 copy (TypedArray.from and map take a slow generic path in V8). */
export function float64(values: Float32Array, transform?: (v: number) => number): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = transform == null ? values[i] : transform(values[i]);
  return out;
}

/** y = x·scale[c] + offset[c] for a layout of one sample: channelScaleOffset. */
export function channelScaleOffset(x: Float32Array, layout: Layout, scale: Float32Array,
    offset: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  scaleOffsetPass(x, out, 0, layout, float64(scale), float64(offset));
  return out;
}

/**
 * Per-(set, group) coefficients of a normalization: y = γ_c·((x − mean)·factor + bias) + β_c.
 * Batch norm: factor = r/√(σ²+ε), bias = d. Group norm: factor = 1/√(σ²+ε), no bias.
 */
export interface NormalizeCoefficients {
  mean: Float64Array;
  factor: Float64Array;
  /** Null is 0. */
  bias: Float64Array | null;
}

/** y = γ_c·((x − mean)·factor + bias) + β_c per (set, group), γ and β per channel (β null is 0). */
export function normalize(x: Float32Array, layout: Layout, coefficients: NormalizeCoefficients,
    gamma: Float32Array, beta: Float32Array | null): Float32Array {
  const {samples, rows, channels, inner, groups, groupSize} = layout;
  const {mean, factor, bias} = coefficients;
  const out = new Float32Array(x.length);
  // Zeros for a null β, so that the loops below do not branch per value.
  const betaValues = beta ?? new Float32Array(channels);
  if (rows * inner === 1 && layout.sets === samples) {
    // One value per (sample, channel), as in a [N, C] input, and statistics per sample: no coefficients
    // worth folding.
    for (let sample = 0, i = 0; sample < samples; sample++) {
      const first = firstStatistic(layout, sample);
      for (let stat = first, c = 0; stat < first + groups; stat++) {
        // Hoisted: V8 would reload them for every value.
        const statMean = mean[stat];
        const statFactor = factor[stat];
        const statBias = bias == null ? 0 : bias[stat];
        for (const end = c + groupSize; c < end; c++, i++) {
          out[i] = gamma[c] * ((x[i] - statMean) * statFactor + statBias) + betaValues[c];
        }
      }
    }
    return out;
  }
  // Folded per (set, channel): y = x·scale + offset. Group norm's sets (one per sample) are folded
  // in turn, as each sample is walked; shared sets (batch norm's one, ghost batches) all first.
  const foldPerSample = layout.sets === samples && samples > 1;
  const slots = foldPerSample ? 1 : layout.sets;
  const scale = new Float64Array(slots * channels);
  const offset = new Float64Array(slots * channels);
  const fold = (sample: number, slot: number) => {
    const first = firstStatistic(layout, sample);
    for (let stat = first, c = 0, k = slot * channels; stat < first + groups; stat++) {
      const statBias = bias == null ? 0 : bias[stat];
      for (const end = c + groupSize; c < end; c++, k++) {
        scale[k] = gamma[c] * factor[stat];
        offset[k] = betaValues[c] + gamma[c] * statBias - mean[stat] * scale[k];
      }
    }
  };
  // Sample `slot` is the first of its set.
  if (!foldPerSample) for (let slot = 0; slot < slots; slot++) fold(slot, slot);
  for (let sample = 0; sample < samples; sample++) {
    if (foldPerSample) fold(sample, 0);
    const slot = foldPerSample ? 0 : sample % slots;
    scaleOffsetPass(x, out, sample * sampleSize(layout), layout, scale, offset, slot * channels);
  }
  return out;
}
