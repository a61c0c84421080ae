/**
 * Fused cpu GROUP_NORM_GRAD in two passes: Σdy and Σdy·(x − μ) per
 * (sample, channel), combined per group with γ; then
 * dx = (1/σ)·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) over the group's values,
 * written as dx = dy·p + x·q + k with p, q, k folded per (sample, channel).
 * dγ_c = Σ_n Σdy·x̂, dβ_c = Σ_n Σdy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {GROUP_NORM_GRAD} from '../group_norm';
import {groupTotals, spreadGroups} from './group_norm';
import {affine2, countPerEntry, entryGradSums, layoutOf, output, read} from './passes';

export const groupNormGradConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {dy, x, mean, variance, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const layout = layoutOf(x.shape, axis, true);
    const {samples, channels} = layout;
    const n = countPerEntry(layout) * channels / groups;
    const xs = read(backend, x);
    const dys = read(backend, dy);
    const g = read(backend, gamma);
    const center = spreadGroups(read(backend, mean), samples, channels, groups);
    const invStd = spreadGroups(read(backend, variance).map((v) => 1 / Math.sqrt(v + epsilon)),
        samples, channels, groups);
    const {sumDy, sumDyXc} = entryGradSums(dys, xs, layout, center);
    const weighted = (sums: Float64Array) => spreadGroups(
        groupTotals(sums.map((v, i) => v * g[i % channels]), samples, channels, groups), samples, channels, groups);
    const groupDy = weighted(sumDy);
    const groupDyXc = weighted(sumDyXc);
    const p = new Float64Array(samples * channels);
    const q = new Float64Array(samples * channels);
    const k = new Float64Array(samples * channels);
    const dGamma = new Float64Array(channels);
    const dBeta = new Float64Array(channels);
    for (let i = 0; i < p.length; i++) {
      const c = i % channels;
      const s = invStd[i];
      p[i] = g[c] * s;
      q[i] = -s * s * s * groupDyXc[i] / n;
      k[i] = -s * groupDy[i] / n - center[i] * q[i];
      dGamma[c] += sumDyXc[i] * s;
      dBeta[c] += sumDy[i];
    }
    return [output(backend, x.shape, affine2(dys, xs, layout, p, q, k)), output(backend, [channels], dGamma),
      output(backend, [channels], dBeta)];
  },
};
