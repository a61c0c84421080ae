/**
 * Fused cpu GROUP_NORM: per-(sample, group) mean and biased variance in one
 * pass (./passes.ts groupMoments, float64), then y = γ_c·(x − μ)/√(σ² + ε) + β_c
 * in a second.
 */
import * as tf from '@tensorflow/tfjs-core';
import {GROUP_NORM} from '../group_norm';
import {groupMoments, layoutOf, normalize, output, read} from './passes';

export const groupNormConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {beta} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const xs = read(backend, x);
    const layout = layoutOf(x.shape, axis, groups);
    const {mean, variance} = groupMoments(xs, layout);
    const invStd = new Float64Array(variance.length);
    for (let j = 0; j < invStd.length; j++) invStd[j] = 1 / Math.sqrt(variance[j] + epsilon);
    const y = normalize(xs, layout, mean, invStd, new Float64Array(mean.length), read(backend, gamma),
        beta == null ? null : read(backend, beta));
    const statShape = [layout.samples, groups];
    return [output(backend, x.shape, y), output(backend, statShape, mean), output(backend, statShape, variance)];
  },
};
