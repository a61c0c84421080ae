/**
 * The input gradient of a normalization and the sums behind its parameter
 * gradients, in two passes per sample (sums, then dx), float64 arithmetic.
 *
 * With g = γ·r per channel (batch renorm's r, held constant as in Keras; 1
 * otherwise), σ = √(var + ε) and means over each (sample, group) of n values:
 *   dx = (1/σ)·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂))
 *        + ∂L/∂mean/n + ∂L/∂var·2(x − μ)/n      (when the statistics are used)
 * which is dx = dy·dyScale + x·xScale + offset with per-channel coefficients.
 */
import {float64} from './forward';
import {Layout, sampleSize, valuesPerStatistic} from './layout';

export interface GradientInputs {
  dy: Float32Array;
  x: Float32Array;
  /** Per (sample, group). */
  mean: Float32Array;
  /** Biased variance per (sample, group). */
  variance: Float32Array;
  gamma: Float32Array;
  /** Batch renorm's r per channel; null is 1. */
  r: Float32Array | null;
  /** Upstream gradients of the mean and variance outputs per (sample, group); null is 0. */
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

/** Σ dy and Σ dy·(x − center) per channel over one sample's block, into sumDy and sumDyCentered. */
function gradientSumsPass(dy: Float32Array, x: Float32Array, start: number, layout: Layout, center: Float64Array,
    sumDy: Float64Array, sumDyCentered: Float64Array): void {
  const {rows, channels, inner} = layout;
  sumDy.fill(0);
  sumDyCentered.fill(0);
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
  const {samples, rows, channels, inner, groups, groupSize} = layout;
  const count = valuesPerStatistic(layout);
  const gain = float64(inputs.gamma);
  if (r != null) for (let c = 0; c < channels; c++) gain[c] *= r[c];
  const mean = float64(inputs.mean);
  const invStd = float64(inputs.variance, (v) => 1 / Math.sqrt(v + epsilon));
  const dx = new Float32Array(x.length);
  const channelDy = new Float64Array(channels);
  const channelDyXhat = new Float64Array(channels);
  // Per (sample, group), from Σ g·dy and Σ g·dy·(x − μ) over it: dx = dy·g/σ + (x − μ)·centeredScale + constant,
  // centeredScale = −Σ g·dy·(x − μ)/(n·σ³) + 2·∂L/∂var/n, constant = −Σ g·dy/(n·σ) + ∂L/∂mean/n.
  const centeredScaleOf = (stat: number, groupDyCentered: number) => {
    const statInvStd = invStd[stat];
    return -statInvStd * statInvStd * statInvStd * groupDyCentered / count +
      (varianceGrad == null ? 0 : 2 * varianceGrad[stat] / count);
  };
  const constantOf = (stat: number, groupDy: number) =>
    -invStd[stat] * groupDy / count + (meanGrad == null ? 0 : meanGrad[stat] / count);
  if (rows * inner === 1) {
    // One value per (sample, channel), as in a [N, C] input: each group is one contiguous run.
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
  // Per-channel scratch for the current sample.
  const [center, sumDy, sumDyCentered, dyScale, xScale, offset] =
      Array.from({length: 6}, () => new Float64Array(channels));
  for (let sample = 0; sample < samples; sample++) {
    const start = sample * sampleSize(layout);
    for (let stat = sample * groups, c = 0; stat < (sample + 1) * groups; stat++) {
      for (const end = c + groupSize; c < end; c++) center[c] = mean[stat];
    }
    gradientSumsPass(dy, x, start, layout, center, sumDy, sumDyCentered);
    for (let stat = sample * groups, first = 0; stat < (sample + 1) * groups; stat++, first += groupSize) {
      let groupDy = 0;
      let groupDyCentered = 0;
      for (let c = first; c < first + groupSize; c++) {
        groupDy += gain[c] * sumDy[c];
        groupDyCentered += gain[c] * sumDyCentered[c];
        channelDy[c] += sumDy[c];
        channelDyXhat[c] += sumDyCentered[c] * invStd[stat];
      }
      const centeredScale = centeredScaleOf(stat, groupDyCentered);
      // (x − μ)·centeredScale + constant = x·centeredScale + (constant − μ·centeredScale).
      const constant = constantOf(stat, groupDy) - mean[stat] * centeredScale;
      for (let c = first; c < first + groupSize; c++) {
        dyScale[c] = gain[c] * invStd[stat];
        xScale[c] = centeredScale;
        offset[c] = constant;
      }
    }
    inputGradientPass(dy, x, dx, start, layout, dyScale, xScale, offset);
  }
  return {dx, channelDy, channelDyXhat};
}
