/**
 * Fused cpu BATCH_NORM_TRAINING, BATCH_RENORM_TRAINING and
 * GHOST_BATCH_NORM_TRAINING: mean and biased variance per channel (per ghost
 * batch and channel with virtualBatchSize) in one float64 pass (./moments.ts),
 * the renorm corrections r and d per channel, then
 * y = γ·((x − μ)·r/σ + d) + β in a second pass. Ghost batches are walked in
 * place (./layout.ts): no reshaped or transposed copy of x.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {BATCH_NORM_TRAINING, BATCH_RENORM_TRAINING} from '../batch_norm';
import {GHOST_BATCH_NORM_TRAINING} from '../ghost_batch_norm';
import {normalize} from './forward';
import {layoutOf, perLayoutChannel} from './layout';
import {moments} from './moments';

const batchNormTraining: tf.KernelFunc = ({inputs, attrs, backend}) => {
  const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
  const {beta, renormMean, renormStddev} = inputs as Record<string, tf.TensorInfo | undefined>;
  const {axis, epsilon, rmin, rmax, dmax} = attrs as Record<string, number>;
  const virtualBatchSize = (attrs as Record<string, number | undefined>).virtualBatchSize;
  const xValues = readCpuValues(backend, x);
  const layout = layoutOf(x.shape, axis, {virtualBatchSize});
  const channels = x.shape[axis];
  const ghostBatches = virtualBatchSize == null ? 1 : x.shape[0] / virtualBatchSize;
  // Per (ghost batch, channel), index ghost·C + channel; one ghost batch without virtualBatchSize.
  const {mean, variance} = moments(xValues, layout);
  // What the moving statistics follow: the averages over the ghost batches (tf.keras 2.x).
  const meanAverage = new Float64Array(channels);
  const varianceAverage = new Float64Array(channels);
  const share = 1 / ghostBatches;
  for (let ghost = 0, stat = 0; ghost < ghostBatches; ghost++) {
    for (let c = 0; c < channels; c++, stat++) {
      meanAverage[c] += mean[stat] * share;
      varianceAverage[c] += variance[stat] * share;
    }
  }
  const renorm = renormMean != null && renormStddev != null ?
    {mean: readCpuValues(backend, renormMean), stddev: readCpuValues(backend, renormStddev)} : null;
  const r = new Float64Array(channels).fill(1);
  const d = new Float64Array(channels);
  if (renorm != null) {
    for (let c = 0; c < channels; c++) {
      const s = Math.max(renorm.stddev[c], Math.sqrt(epsilon));
      r[c] = Math.min(Math.max(Math.sqrt(varianceAverage[c] + epsilon) / s, rmin), rmax);
      d[c] = Math.min(Math.max((meanAverage[c] - renorm.mean[c]) / s, -dmax), dmax);
    }
  }
  const factor = new Float64Array(ghostBatches * channels);
  const bias = new Float64Array(ghostBatches * channels);
  for (let ghost = 0, stat = 0; ghost < ghostBatches; ghost++) {
    for (let c = 0; c < channels; c++, stat++) {
      factor[stat] = r[c] / Math.sqrt(variance[stat] + epsilon);
      bias[stat] = d[c];
    }
  }
  const y = normalize(xValues, layout, {mean, factor, bias}, perLayoutChannel(readCpuValues(backend, gamma), layout),
      beta == null ? null : perLayoutChannel(readCpuValues(backend, beta), layout));
  const perChannel = (values: Float64Array) => makeCpuOutput(backend, [channels], values);
  const outputs = [makeCpuOutput(backend, x.shape, y), perChannel(meanAverage), perChannel(varianceAverage),
    perChannel(r), perChannel(d)];
  // The ghost kernel also returns the statistics of each ghost batch, which its backward needs.
  if (virtualBatchSize != null) {
    const statisticsShape = [ghostBatches * channels];
    outputs.push(makeCpuOutput(backend, statisticsShape, mean), makeCpuOutput(backend, statisticsShape, variance));
  }
  return outputs;
};

export const batchNormTrainingConfig: tf.KernelConfig =
    {kernelName: BATCH_NORM_TRAINING, backendName: 'cpu', kernelFunc: batchNormTraining};
export const batchRenormTrainingConfig: tf.KernelConfig =
    {kernelName: BATCH_RENORM_TRAINING, backendName: 'cpu', kernelFunc: batchNormTraining};
export const ghostBatchNormTrainingConfig: tf.KernelConfig =
    {kernelName: GHOST_BATCH_NORM_TRAINING, backendName: 'cpu', kernelFunc: batchNormTraining};
