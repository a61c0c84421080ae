/** Fused cpu CHANNEL_SCALE_OFFSET: y = x·scale + offset per channel, one pass. */
import * as tf from '@tensorflow/tfjs-core';
import {CHANNEL_SCALE_OFFSET} from '../batch_norm';
import {layoutOf, normalize, output, read} from './passes';

export const channelScaleOffsetConfig: tf.KernelConfig = {
  kernelName: CHANNEL_SCALE_OFFSET,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, scale, offset} = inputs as Record<string, tf.TensorInfo>;
    const layout = layoutOf(x.shape, (attrs as Record<string, number>).axis);
    const c = layout.channels;
    // normalize with μ = 0, a = 1, b = 0 is x·γ + β.
    const y = normalize(read(backend, x), layout, new Float64Array(c), new Float64Array(c).fill(1),
        new Float64Array(c), read(backend, scale), read(backend, offset));
    return output(backend, x.shape, y);
  },
};
