/**
 * The output passes of the fused forward kernels, in float64 arithmetic on
 * float32 values. They work one sample at a time (a contiguous block of
 * rows × channels × inner values) with coefficients folded per channel for
 * it, so the scratch is per channel and each pass reads x once.
 */
import {Layout, sampleSize} from './layout';

/** out = x·scale[c] + offset[c] over one sample's block starting at `start`. */
export function scaleOffsetPass(x: Float32Array, out: Float32Array, start: number, layout: Layout,
    scale: Float64Array, offset: Float64Array): void {
  const {rows, channels, inner} = layout;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) out[i] = x[i] * scale[c] + offset[c];
      continue;
    }
    for (let c = 0; c < channels; c++) {
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
 * Per-(sample, group) coefficients of a normalization: y = γ_c·((x − mean)·factor + bias) + β_c.
 * Batch norm: factor = r/√(σ²+ε), bias = d. Group norm: factor = 1/√(σ²+ε), no bias.
 */
export interface NormalizeCoefficients {
  mean: Float64Array;
  factor: Float64Array;
  /** Null is 0. */
  bias: Float64Array | null;
}

/** y = γ_c·((x − mean)·factor + bias) + β_c per (sample, group), γ and β per channel (β null is 0). */
export function normalize(x: Float32Array, layout: Layout, coefficients: NormalizeCoefficients,
    gamma: Float32Array, beta: Float32Array | null): Float32Array {
  const {samples, rows, channels, inner, groups, groupSize} = layout;
  const {mean, factor, bias} = coefficients;
  const out = new Float32Array(x.length);
  // Zeros for a null β, so that the loops below do not branch per value.
  const betaValues = beta ?? new Float32Array(channels);
  if (rows * inner === 1) {
    // One value per (sample, channel), as in a [N, C] input: no coefficients worth folding.
    for (let sample = 0, i = 0; sample < samples; sample++) {
      for (let stat = sample * groups, c = 0; stat < (sample + 1) * groups; stat++) {
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
  const scale = new Float64Array(channels);
  const offset = new Float64Array(channels);
  for (let sample = 0; sample < samples; sample++) {
    for (let stat = sample * groups, c = 0; stat < (sample + 1) * groups; stat++) {
      const statBias = bias == null ? 0 : bias[stat];
      for (const end = c + groupSize; c < end; c++) {
        scale[c] = gamma[c] * factor[stat];
        offset[c] = betaValues[c] + gamma[c] * statBias - mean[stat] * scale[c];
      }
    }
    scaleOffsetPass(x, out, sample * sampleSize(layout), layout, scale, offset);
  }
  return out;
}
