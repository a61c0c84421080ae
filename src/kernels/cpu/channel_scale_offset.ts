/** Fused cpu CHANNEL_SCALE_OFFSET: y = x·scale + offset per channel, one pass. */
import * as tf from '@tensorflow/tfjs-core';
import {makeCpuOutput, readCpuValues} from '../../tfjs_internals';
import {CHANNEL_SCALE_OFFSET} from '../batch_norm';
import {channelScaleOffset} from './forward';
import {layoutOf} from './layout';

export const channelScaleOffsetConfig: tf.KernelConfig = {
  kernelName: CHANNEL_SCALE_OFFSET,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, scale, offset} = inputs as Record<string, tf.TensorInfo>;
    const layout = layoutOf(x.shape, (attrs as Record<string, number>).axis);
    const y = channelScaleOffset(readCpuValues(backend, x), layout, readCpuValues(backend, scale),
        readCpuValues(backend, offset));
    return makeCpuOutput(backend, x.shape, y);
  },
};
