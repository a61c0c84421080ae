/**
 * The full-size loops every fused cpu kernel is built from, in float64.
 *
 * They walk the [outer, channels, inner] view (../view.ts) split by sample:
 * outer = samples × rows. Per-channel statistics (batch norm) use one sample
 * covering every row; per-sample statistics (group norm) use samples = N.
 * Every per-position quantity is indexed by (sample, channel) = s·channels + c,
 * so the hot loops never divide: a channels-last input (inner = 1) is read row
 * by row, a channels-first one in contiguous runs of `inner` values.
 */
import * as tf from '@tensorflow/tfjs-core';
import {channelView} from '../view';

export interface Layout {
  samples: number;
  /** Rows of the view per sample: outer / samples. */
  rows: number;
  channels: number;
  inner: number;
}

/** Layout of `shape` with channel axis `axis`; `perSample` splits it by the batch axis 0. */
export function layoutOf(shape: readonly number[], axis: number, perSample: boolean): Layout {
  const {outer, channels, inner} = channelView(shape, axis);
  const samples = perSample ? shape[0] : 1;
  return {samples, rows: outer / samples, channels, inner};
}

/** Values summed into each (sample, channel) entry. */
export function countPerEntry(l: Layout): number {
  return l.rows * l.inner;
}

/** values / n, in place (a typed array's map is slow in V8). */
export function dividedBy(values: Float64Array, n: number): Float64Array {
  for (let i = 0; i < values.length; i++) values[i] /= n;
  return values;
}

/** Σ x per (sample, channel). */
export function entrySums(x: Float32Array, l: Layout): Float64Array {
  const {samples, rows, channels, inner} = l;
  const acc = new Float64Array(samples * channels);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let row = 0; row < rows; row++) {
      if (inner === 1) {
        for (let c = 0; c < channels; c++) acc[base + c] += x[i++];
        continue;
      }
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (const end = i + inner; i < end; i++) sum += x[i];
        acc[base + c] += sum;
      }
    }
  }
  return acc;
}

/** Σ (x − center)² per (sample, channel): the second pass of a two-pass variance. */
export function entrySquaredDeviations(x: Float32Array, l: Layout, center: Float64Array): Float64Array {
  const {samples, rows, channels, inner} = l;
  const acc = new Float64Array(samples * channels);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let row = 0; row < rows; row++) {
      if (inner === 1) {
        for (let c = 0; c < channels; c++) {
          const v = x[i++] - center[base + c];
          acc[base + c] += v * v;
        }
        continue;
      }
      for (let c = 0; c < channels; c++) {
        const m = center[base + c];
        let sum = 0;
        for (const end = i + inner; i < end; i++) {
          const v = x[i] - m;
          sum += v * v;
        }
        acc[base + c] += sum;
      }
    }
  }
  return acc;
}

/** Σ dy and Σ dy·(x − center) per (sample, channel), in one pass over both. */
export function entryGradSums(dy: Float32Array, x: Float32Array, l: Layout, center: Float64Array):
    {sumDy: Float64Array; sumDyXc: Float64Array} {
  const {samples, rows, channels, inner} = l;
  const sumDy = new Float64Array(samples * channels);
  const sumDyXc = new Float64Array(samples * channels);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let row = 0; row < rows; row++) {
      if (inner === 1) {
        for (let c = 0; c < channels; c++, i++) {
          const g = dy[i];
          sumDy[base + c] += g;
          sumDyXc[base + c] += g * (x[i] - center[base + c]);
        }
        continue;
      }
      for (let c = 0; c < channels; c++) {
        const m = center[base + c];
        let a = 0;
        let b = 0;
        for (const end = i + inner; i < end; i++) {
          const g = dy[i];
          a += g;
          b += g * (x[i] - m);
        }
        sumDy[base + c] += a;
        sumDyXc[base + c] += b;
      }
    }
  }
  return {sumDy, sumDyXc};
}

/** out = x·scale + offset, parameters per (sample, channel). */
export function affine(x: Float32Array, l: Layout, scale: Float64Array, offset: Float64Array): Float32Array {
  const {samples, rows, channels, inner} = l;
  const out = new Float32Array(x.length);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let row = 0; row < rows; row++) {
      if (inner === 1) {
        for (let c = 0; c < channels; c++, i++) out[i] = x[i] * scale[base + c] + offset[base + c];
        continue;
      }
      for (let c = 0; c < channels; c++) {
        const a = scale[base + c];
        const b = offset[base + c];
        for (const end = i + inner; i < end; i++) out[i] = x[i] * a + b;
      }
    }
  }
  return out;
}

/** out = dy·p + x·q + k, parameters per (sample, channel): the input gradient of a normalization. */
export function affine2(dy: Float32Array, x: Float32Array, l: Layout,
    p: Float64Array, q: Float64Array, k: Float64Array): Float32Array {
  const {samples, rows, channels, inner} = l;
  const out = new Float32Array(x.length);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let row = 0; row < rows; row++) {
      if (inner === 1) {
        for (let c = 0; c < channels; c++, i++) out[i] = dy[i] * p[base + c] + x[i] * q[base + c] + k[base + c];
        continue;
      }
      for (let c = 0; c < channels; c++) {
        const a = p[base + c];
        const b = q[base + c];
        const e = k[base + c];
        for (const end = i + inner; i < end; i++) out[i] = dy[i] * a + x[i] * b + e;
      }
    }
  }
  return out;
}

/** The cpu backend's storage, as its kernels use it (the package does not import tfjs-backend-cpu). */
interface CpuBackend {
  data: {get(dataId: object): {values: ArrayLike<number>}};
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
}

/** The values of a float32 tensor held by the cpu backend. */
export function read(backend: unknown, t: tf.TensorInfo): Float32Array {
  return (backend as CpuBackend).data.get(t.dataId).values as Float32Array;
}

/** A new float32 tensor on the cpu backend. */
export function output(backend: unknown, shape: number[], values: ArrayLike<number>): tf.TensorInfo {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  return (backend as CpuBackend).makeTensorInfo(shape, 'float32', data);
}
