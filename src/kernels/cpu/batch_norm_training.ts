/**
 * Fused cpu BATCH_NORM_TRAINING: per-channel mean and biased variance in one
 * pass (./passes.ts groupMoments, float64, accurate for inputs whose mean
 * dwarfs their spread), then y = γ·((x − μ)·r/σ + d) + β in a second.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BATCH_NORM_TRAINING} from '../batch_norm';
import {groupMoments, layoutOf, normalize, output, read} from './passes';

export const batchNormTrainingConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_TRAINING,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {beta, renormMean, renormStddev} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, epsilon, rmin, rmax, dmax} = attrs as Record<string, number>;
    const xs = read(backend, x);
    const layout = layoutOf(x.shape, axis);
    const c = layout.channels;
    const {mean, variance} = groupMoments(xs, layout);
    const renorm = renormMean != null && renormStddev != null ?
        {mean: read(backend, renormMean), stddev: read(backend, renormStddev)} : null;
    const r = new Float64Array(c).fill(1);
    const d = new Float64Array(c);
    const rOverStd = new Float64Array(c);
    for (let k = 0; k < c; k++) {
      const std = Math.sqrt(variance[k] + epsilon);
      if (renorm != null) {
        const s = Math.max(renorm.stddev[k], Math.sqrt(epsilon));
        r[k] = Math.min(Math.max(std / s, rmin), rmax);
        d[k] = Math.min(Math.max((mean[k] - renorm.mean[k]) / s, -dmax), dmax);
      }
      rOverStd[k] = r[k] / std;
    }
    const y = normalize(xs, layout, mean, rOverStd, d, read(backend, gamma), beta == null ? null : read(backend, beta));
    return [output(backend, x.shape, y), output(backend, [c], mean), output(backend, [c], variance),
      output(backend, [c], r), output(backend, [c], d)];
  },
};
