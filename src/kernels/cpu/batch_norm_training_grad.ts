/**
 * Fused cpu BATCH_NORM_TRAINING_GRAD in two passes (./passes.ts
 * normalizationGradient): dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)),
 * dγ = Σ dy·(x̂·r + d), dβ = Σ dy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BATCH_NORM_TRAINING_GRAD} from '../batch_norm';
import {normalizationGradient, output, read} from './passes';

export const batchNormTrainingGradConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_TRAINING_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {dy, x, mean, variance, gamma, r, d} = inputs as Record<string, tf.TensorInfo>;
    const {axis, epsilon} = attrs as Record<string, number>;
    const rs = read(backend, r);
    const ds = read(backend, d);
    const {dx, sums} = normalizationGradient(backend, {dy, x, mean, variance, gamma}, axis, epsilon, undefined, rs);
    const dGamma = sums.channelDyXhat.map((v, c) => v * rs[c] + sums.channelDy[c] * ds[c]);
    return [dx, output(backend, [rs.length], dGamma), output(backend, [rs.length], sums.channelDy)];
  },
};
