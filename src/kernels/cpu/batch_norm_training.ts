/**
 * Fused cpu BATCH_NORM_TRAINING (and BATCH_RENORM_TRAINING): per-channel mean
 * and biased variance in one float64 pass (./moments.ts), the renorm
 * corrections r and d, then y = γ·((x − μ)·r/σ + d) + β in a second pass.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {BATCH_NORM_TRAINING, BATCH_RENORM_TRAINING} from '../batch_norm';
import {normalize} from './forward';
import {layoutOf} from './layout';
import {moments} from './moments';

const batchNormTraining: tf.KernelFunc = ({inputs, attrs, backend}) => {
  const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
  const {beta, renormMean, renormStddev} = inputs as Record<string, tf.TensorInfo | undefined>;
  const {axis, epsilon, rmin, rmax, dmax} = attrs as Record<string, number>;
  const xValues = readCpuValues(backend, x);
  const layout = layoutOf(x.shape, axis);
  const channels = layout.channels;
  const {mean, variance} = moments(xValues, layout);
  const renorm = renormMean != null && renormStddev != null ?
    {mean: readCpuValues(backend, renormMean), stddev: readCpuValues(backend, renormStddev)} : null;
  const r = new Float64Array(channels).fill(1);
  const d = new Float64Array(channels);
  const rOverStd = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const std = Math.sqrt(variance[c] + epsilon);
    if (renorm != null) {
      const s = Math.max(renorm.stddev[c], Math.sqrt(epsilon));
      r[c] = Math.min(Math.max(std / s, rmin), rmax);
      d[c] = Math.min(Math.max((mean[c] - renorm.mean[c]) / s, -dmax), dmax);
    }
    rOverStd[c] = r[c] / std;
  }
  const y = normalize(xValues, layout, {mean, factor: rOverStd, bias: d}, readCpuValues(backend, gamma),
      beta == null ? null : readCpuValues(backend, beta));
  return [makeCpuOutput(backend, x.shape, y), makeCpuOutput(backend, [channels], mean),
    makeCpuOutput(backend, [channels], variance), makeCpuOutput(backend, [channels], r),
    makeCpuOutput(backend, [channels], d)];
};

export const batchNormTrainingConfig: tf.KernelConfig =
    {kernelName: BATCH_NORM_TRAINING, backendName: 'cpu', kernelFunc: batchNormTraining};
export const batchRenormTrainingConfig: tf.KernelConfig =
    {kernelName: BATCH_RENORM_TRAINING, backendName: 'cpu', kernelFunc: batchNormTraining};
