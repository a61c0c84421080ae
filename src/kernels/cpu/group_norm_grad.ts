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
    const center = spreadGroups(Float64Array.from(read(backend, mean)), samples, channels, groups);
    const invStd = spreadGroups(Float64Array.from(read(backend, variance)), samples, channels, groups);
    for (let i = 0; i < invStd.length; i++) invStd[i] = 1 / Math.sqrt(invStd[i] + epsilon);
    const {sumDy, sumDyXc} = entryGradSums(dys, xs, layout, center);
    // Σ over the group of γ·dy and γ·dy·(x − μ), per (sample, channel).
    const weighted = (sums: Float64Array) => {
      const w = new Float64Array(sums.length);
      for (let s = 0, i = 0; s < samples; s++) for (let c = 0; c < channels; c++, i++) w[i] = sums[i] * g[c];
      return spreadGroups(groupTotals(w, samples, channels, groups), samples, channels, groups);
    };
    const groupDy = weighted(sumDy);
    const groupDyXc = weighted(sumDyXc);
    const p = new Float64Array(samples * channels);
    const q = new Float64Array(samples * channels);
    const k = new Float64Array(samples * channels);
    const dGamma = new Float64Array(channels);
    const dBeta = new Float64Array(channels);
    for (let s = 0, i = 0; s < samples; s++) {
      for (let c = 0; c < channels; c++, i++) {
        const r = invStd[i];
        p[i] = g[c] * r;
        q[i] = -r * r * r * groupDyXc[i] / n;
        k[i] = -r * groupDy[i] / n - center[i] * q[i];
        dGamma[c] += sumDyXc[i] * r;
        dBeta[c] += sumDy[i];
      }
    }
    return [output(backend, x.shape, affine2(dys, xs, layout, p, q, k)), output(backend, [channels], dGamma),
      output(backend, [channels], dBeta)];
  },
};
