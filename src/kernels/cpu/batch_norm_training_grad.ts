/**
 * Fused cpu BATCH_NORM_TRAINING_GRAD in two passes (./gradient.ts):
 * dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) plus the statistics' upstream
 * gradients (meanGrad, varianceGrad, optional), dγ = Σ dy·(x̂·r + d), dβ = Σ dy;
 * with virtualBatchSize, μ and σ² per (ghost batch, channel) and r, d per channel.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {BATCH_NORM_TRAINING_GRAD} from '../batch_norm';
import {normalizationGradient} from './gradient';
import {layoutOf, perLayoutChannel, perTensorChannel} from './layout';

export const batchNormTrainingGradConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_TRAINING_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {dy, x, mean, variance, gamma, r, d} = inputs as Record<string, tf.TensorInfo>;
    const {meanGrad, varianceGrad} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, epsilon} = attrs as Record<string, number>;
    const virtualBatchSize = (attrs as Record<string, number | undefined>).virtualBatchSize;
    const read = (t: tf.TensorInfo | undefined) => t == null ? null : readCpuValues(backend, t);
    const rValues = readCpuValues(backend, r);
    const dValues = readCpuValues(backend, d);
    const layout = layoutOf(x.shape, axis, {virtualBatchSize});
    const gradient = normalizationGradient({
      dy: readCpuValues(backend, dy), x: readCpuValues(backend, x), mean: readCpuValues(backend, mean),
      variance: readCpuValues(backend, variance), gamma: perLayoutChannel(readCpuValues(backend, gamma), layout),
      r: perLayoutChannel(rValues, layout), meanGrad: read(meanGrad), varianceGrad: read(varianceGrad),
    }, layout, epsilon);
    const channelDy = perTensorChannel(gradient.channelDy, layout);
    const channelDyXhat = perTensorChannel(gradient.channelDyXhat, layout);
    const dGamma = channelDyXhat.map((sum, c) => sum * rValues[c] + channelDy[c] * dValues[c]);
    const channels = [rValues.length];
    return [makeCpuOutput(backend, x.shape, gradient.dx), makeCpuOutput(backend, channels, dGamma),
      makeCpuOutput(backend, channels, channelDy)];
  },
};
