/**
 * Fused cpu GROUP_NORM_GRAD in two passes (./gradient.ts):
 * dx = (1/σ)·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) over each (sample, group)
 * plus the statistics' upstream gradients (meanGrad, varianceGrad, optional);
 * dγ_c = Σ dy·x̂, dβ_c = Σ dy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {GROUP_NORM_GRAD} from '../group_norm';
import {normalizationGradient} from './gradient';
import {layoutOf} from './layout';

export const groupNormGradConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {dy, x, mean, variance, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {meanGrad, varianceGrad} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, groups, epsilon} = attrs as Record<string, number>;
    const read = (t: tf.TensorInfo | undefined) => t == null ? null : readCpuValues(backend, t);
    const {dx, channelDy, channelDyXhat} = normalizationGradient({
      dy: readCpuValues(backend, dy), x: readCpuValues(backend, x), mean: readCpuValues(backend, mean),
      variance: readCpuValues(backend, variance), gamma: readCpuValues(backend, gamma), r: null,
      meanGrad: read(meanGrad), varianceGrad: read(varianceGrad),
    }, layoutOf(x.shape, axis, {groups}), epsilon);
    const channels = [channelDy.length];
    return [makeCpuOutput(backend, x.shape, dx), makeCpuOutput(backend, channels, channelDyXhat),
      makeCpuOutput(backend, channels, channelDy)];
  },
};
