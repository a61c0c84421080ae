/**
 * Fused cpu GROUP_NORM: per-(sample, channel) sums in one pass, combined into
 * per-(sample, group) means; Σ(x − μ)² in a second pass for the biased
 * variance (float64 accumulators); y = x·scale + offset in a third, with
 * scale = γ_c/√(σ²_ng + ε) and offset = β_c − μ_ng·scale folded per (n, c).
 */
import * as tf from '@tensorflow/tfjs-core';
import {GROUP_NORM} from '../group_norm';
import {
  affine, countPerEntry, dividedBy, entrySquaredDeviations, entrySums, layoutOf, output, read,
} from './passes';

/** Per-(sample, group) totals of per-(sample, channel) values; groups hold consecutive channels. */
export function groupTotals(perEntry: Float64Array, samples: number, channels: number, groups: number): Float64Array {
  const size = channels / groups;
  const out = new Float64Array(samples * groups);
  for (let j = 0, i = 0; j < out.length; j++) {
    let sum = 0;
    for (const end = i + size; i < end; i++) sum += perEntry[i];
    out[j] = sum;
  }
  return out;
}

/** A per-(sample, group) value repeated for every channel of the group: per (sample, channel). */
export function spreadGroups(perGroup: Float64Array, samples: number, channels: number, groups: number):
    Float64Array {
  const size = channels / groups;
  const out = new Float64Array(samples * channels);
  for (let j = 0; j < perGroup.length; j++) out.fill(perGroup[j], j * size, (j + 1) * size);
  return out;
}

export const groupNormConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {beta} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const xs = read(backend, x);
    const layout = layoutOf(x.shape, axis, true);
    const {samples, channels} = layout;
    const n = countPerEntry(layout) * channels / groups;
    const mean = dividedBy(groupTotals(entrySums(xs, layout), samples, channels, groups), n);
    const center = spreadGroups(mean, samples, channels, groups);
    const variance = dividedBy(
        groupTotals(entrySquaredDeviations(xs, layout, center), samples, channels, groups), n);
    const spreadVariance = spreadGroups(variance, samples, channels, groups);
    const g = read(backend, gamma);
    const b = beta == null ? null : read(backend, beta);
    const scale = new Float64Array(samples * channels);
    const offset = new Float64Array(samples * channels);
    for (let s = 0, i = 0; s < samples; s++) {
      for (let c = 0; c < channels; c++, i++) {
        scale[i] = g[c] / Math.sqrt(spreadVariance[i] + epsilon);
        offset[i] = (b == null ? 0 : b[c]) - center[i] * scale[i];
      }
    }
    const statShape = [samples, groups];
    return [output(backend, x.shape, affine(xs, layout, scale, offset)), output(backend, statShape, mean),
      output(backend, statShape, variance)];
  },
};
