/**
 * Fused cpu GROUP_NORM_GRAD in two passes (./passes.ts normalizationGradient):
 * dx = (1/σ)·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) over each (sample, group);
 * dγ_c = Σ dy·x̂, dβ_c = Σ dy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {GROUP_NORM_GRAD} from '../group_norm';
import {normalizationGradient, output} from './passes';

export const groupNormGradConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const {dx, sums} = normalizationGradient(backend, inputs as Record<string, tf.TensorInfo>, axis, epsilon, groups);
    const c = sums.channelDy.length;
    return [dx, output(backend, [c], sums.channelDyXhat), output(backend, [c], sums.channelDy)];
  },
};
