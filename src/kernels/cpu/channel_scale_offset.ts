/** Fused cpu CHANNEL_SCALE_OFFSET: y = x·scale + offset per channel, one pass. */
import * as tf from '@tensorflow/tfjs-core';
import {CHANNEL_SCALE_OFFSET} from '../batch_norm';
import {affine, layoutOf, output, read} from './passes';

export const channelScaleOffsetConfig: tf.KernelConfig = {
  kernelName: CHANNEL_SCALE_OFFSET,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, scale, offset} = inputs as Record<string, tf.TensorInfo>;
    const layout = layoutOf(x.shape, (attrs as Record<string, number>).axis, false);
    const y = affine(read(backend, x), layout, Float64Array.from(read(backend, scale)),
        Float64Array.from(read(backend, offset)));
    return output(backend, x.shape, y);
  },
};
