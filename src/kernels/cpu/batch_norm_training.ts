/**
 * Fused cpu BATCH_NORM_TRAINING: per-channel mean, then the biased variance as
 * Σ(x − μ)² (two passes, float64 accumulators: exact enough for inputs whose
 * mean dwarfs their spread), then y = x·scale + offset in one pass with
 * scale = γ·r/√(σ²+ε) and offset = β + γ·d − μ·scale folded in float64.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BATCH_NORM_TRAINING} from '../batch_norm';
import {affine, countPerEntry, dividedBy, entrySquaredDeviations, entrySums, layoutOf, output, read} from './passes';

export const batchNormTrainingConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_TRAINING,
  backendName: 'cpu',
  kernelFunc: ({inputs, attrs, backend}) => {
    const {x, gamma} = inputs as Record<string, tf.TensorInfo>;
    const {beta, renormMean, renormStddev} = inputs as Record<string, tf.TensorInfo | undefined>;
    const {axis, epsilon, rmin, rmax, dmax} = attrs as Record<string, number>;
    const xs = read(backend, x);
    const layout = layoutOf(x.shape, axis, false);
    const n = countPerEntry(layout);
    const c = layout.channels;
    const mean = dividedBy(entrySums(xs, layout), n);
    const variance = dividedBy(entrySquaredDeviations(xs, layout, mean), n);
    const g = read(backend, gamma);
    const b = beta == null ? null : read(backend, beta);
    const renorm = renormMean != null && renormStddev != null ?
        {mean: read(backend, renormMean), stddev: read(backend, renormStddev)} : null;
    const r = new Float64Array(c).fill(1);
    const d = new Float64Array(c);
    const scale = new Float64Array(c);
    const offset = new Float64Array(c);
    for (let k = 0; k < c; k++) {
      const std = Math.sqrt(variance[k] + epsilon);
      if (renorm != null) {
        const s = Math.max(renorm.stddev[k], Math.sqrt(epsilon));
        r[k] = Math.min(Math.max(std / s, rmin), rmax);
        d[k] = Math.min(Math.max((mean[k] - renorm.mean[k]) / s, -dmax), dmax);
      }
      scale[k] = g[k] * r[k] / std;
      offset[k] = (b == null ? 0 : b[k]) + g[k] * d[k] - mean[k] * scale[k];
    }
    return [output(backend, x.shape, affine(xs, layout, scale, offset)), output(backend, [c], mean),
      output(backend, [c], variance), output(backend, [c], r), output(backend, [c], d)];
  },
};
