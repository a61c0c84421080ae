/**
 * Fused cpu GROUP_NORM: per-(sample, group) mean and biased variance in one
 * float64 pass (./moments.ts), then y = γ_c·(x − μ)/√(σ² + ε) + β_c in a second.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {GROUP_NORM} from '../group_norm';
import {normalize} from './forward';
import {layoutOf} from './layout';
import {moments} from './moments';

export const groupNormConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {beta} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const xValues = readCpuValues(backend, x);
    const layout = layoutOf(x.shape, axis, {groups});
    const {mean, variance} = moments(xValues, layout);
    const invStd = new Float64Array(variance.length);
    for (let stat = 0; stat < invStd.length; stat++) invStd[stat] = 1 / Math.sqrt(variance[stat] + epsilon);
    const y = normalize(xValues, layout, {mean, factor: invStd, bias: null}, readCpuValues(backend, gamma),
        beta == null ? null : readCpuValues(backend, beta));
    const statisticsShape = [layout.samples, groups];
    return [makeCpuOutput(backend, x.shape, y), makeCpuOutput(backend, statisticsShape, mean),
      makeCpuOutput(backend, statisticsShape, variance)];
  },
};
