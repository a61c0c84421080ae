/**
 * Fused cpu BATCH_NORM_TRAINING_GRAD in two passes: Σdy and Σdy·(x − μ) per
 * channel, then dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) written as
 * dx = dy·p + x·q + k with p, q, k folded per channel in float64.
 * dγ = Σ dy·(x̂·r + d), dβ = Σ dy.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BATCH_NORM_TRAINING_GRAD} from '../batch_norm';
import {affine2, countPerEntry, entryGradSums, layoutOf, output, read} from './passes';

export const batchNormTrainingGradConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_TRAINING_GRAD,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {dy, x, mean, variance, gamma, r, d} = inputs as Record<string, tf.TensorInfo>;
    const {axis, epsilon} = attrs as Record<string, number>;
    const layout = layoutOf(x.shape, axis, false);
    const n = countPerEntry(layout);
    const c = layout.channels;
    const xs = read(backend, x);
    const dys = read(backend, dy);
    const [mu, v, g, rs, ds] = [mean, variance, gamma, r, d].map((t) => read(backend, t));
    const center = Float64Array.from(mu);
    const {sumDy, sumDyXc} = entryGradSums(dys, xs, layout, center);
    const p = new Float64Array(c);
    const q = new Float64Array(c);
    const k = new Float64Array(c);
    const dGamma = new Float64Array(c);
    for (let j = 0; j < c; j++) {
      const invStd = 1 / Math.sqrt(v[j] + epsilon);
      const gain = g[j] * rs[j] * invStd;
      p[j] = gain;
      q[j] = -gain * invStd * invStd * sumDyXc[j] / n;
      k[j] = -gain * sumDy[j] / n - center[j] * q[j];
      dGamma[j] = sumDyXc[j] * invStd * rs[j] + sumDy[j] * ds[j];
    }
    return [output(backend, x.shape, affine2(dys, xs, layout, p, q, k)), output(backend, [c], dGamma),
      output(backend, [c], sumDy)];
  },
};
