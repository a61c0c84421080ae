/**
 * The full-size loops every fused cpu kernel is built from, in float64.
 *
 * They walk the [outer, channels, inner] view (../view.ts) with outer split
 * into samples × rows. Statistics are kept per (sample, group), index
 * j = s·groups + group(c): batch norm has one sample and one channel per
 * group, group norm N samples and C/G consecutive channels per group.
 * Per-position coefficients are folded per (sample, channel) before the pass.
 * The values of one (sample, row, channel) are a contiguous run of `inner`
 * (one value for channels-last, read row by row), so no loop divides.
 */
import * as tf from '@tensorflow/tfjs-core';
import {channelView} from '../view';

export interface Layout {
  samples: number;
  /** Rows of the view per sample: outer / samples. */
  rows: number;
  channels: number;
  inner: number;
  groups: number;
  /** The group of each channel. */
  groupOf: Int32Array;
}

/** Layout of `shape` with channel axis `axis`; `groups` splits it by sample and channel group. */
export function layoutOf(shape: readonly number[], axis: number, groups?: number): Layout {
  const {outer, channels, inner} = channelView(shape, axis);
  const samples = groups == null ? 1 : shape[0];
  const g = groups ?? channels;
  const groupOf = Int32Array.from({length: channels}, (_, c) => Math.floor(c / (channels / g)));
  return {samples, rows: outer / samples, channels, inner, groups: g, groupOf};
}

/** Values behind each statistic. */
export function countPerGroup(l: Layout): number {
  return l.rows * l.inner * l.channels / l.groups;
}

/** values / n, in place (a typed array's map is slow in V8). */
export function dividedBy(values: Float64Array, n: number): Float64Array {
  for (let i = 0; i < values.length; i++) values[i] /= n;
  return values;
}

/** Σ (x − center) per (sample, group), or Σ (x − center)² when `squared`; center null is 0. */
export function groupSums(x: Float32Array, l: Layout, center: Float64Array | null, squared: boolean): Float64Array {
  const {samples, rows, channels, inner, groups} = l;
  const acc = new Float64Array(samples * groups);
  const shift = center ?? acc.slice();
  // A group's values in one row are a contiguous run: its channels times inner.
  const run = channels / groups * inner;
  if (run === 1) return channelSums(x, rows, channels, shift, squared);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    for (let row = 0; row < rows; row++) {
      for (let j = s * groups; j < (s + 1) * groups; j++) {
        const m = shift[j];
        let sum = 0;
        if (squared) {
          for (const end = i + run; i < end; i++) sum += (x[i] - m) * (x[i] - m);
        } else {
          for (const end = i + run; i < end; i++) sum += x[i] - m;
        }
        acc[j] += sum;
      }
    }
  }
  return acc;
}

/** groupSums for one value per run (batch norm, channels-last): rows of `channels` values. */
function channelSums(x: Float32Array, rows: number, channels: number, shift: Float64Array,
    squared: boolean): Float64Array {
  const acc = new Float64Array(channels);
  let i = 0;
  for (let row = 0; row < rows; row++) {
    if (squared) {
      for (let c = 0; c < channels; c++, i++) acc[c] += (x[i] - shift[c]) * (x[i] - shift[c]);
    } else {
      for (let c = 0; c < channels; c++, i++) acc[c] += x[i] - shift[c];
    }
  }
  return acc;
}

/** out = x·scale + offset, parameters per (sample, channel). */
function affine(x: Float32Array, l: Layout, scale: Float64Array, offset: Float64Array): Float32Array {
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

/** out = dy·p + x·q + k, parameters per (sample, channel). */
function affine2(dy: Float32Array, x: Float32Array, l: Layout,
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

/** Σ dy and Σ dy·(x − μ) per (sample, channel), μ per (sample, group), in one pass over both. */
function entryGradSums(dy: Float32Array, x: Float32Array, l: Layout, mean: Float64Array):
    {sumDy: Float64Array; sumDyXc: Float64Array} {
  const {samples, rows, channels, inner, groups, groupOf} = l;
  const sumDy = new Float64Array(samples * channels);
  const sumDyXc = new Float64Array(samples * channels);
  const shift = new Float64Array(channels);
  let i = 0;
  for (let s = 0; s < samples; s++) {
    const base = s * channels;
    for (let c = 0; c < channels; c++) shift[c] = mean[s * groups + groupOf[c]];
    for (let row = 0; row < rows; row++) {
      for (let c = 0; c < channels; c++) {
        const m = shift[c];
        let a = 0;
        let b = 0;
        for (const end = i + inner; i < end; i++) {
          a += dy[i];
          b += dy[i] * (x[i] - m);
        }
        sumDy[base + c] += a;
        sumDyXc[base + c] += b;
      }
    }
  }
  return {sumDy, sumDyXc};
}

/**
 * y = γ_c·((x − μ_j)·a_j + b_j) + β_c, with μ, a, b per (sample, group) j and
 * γ, β per channel (β null is 0): every kernel's normalization.
 */
export function normalize(x: Float32Array, l: Layout, mean: Float64Array, a: Float64Array, b: Float64Array,
    gamma: ArrayLike<number>, beta: ArrayLike<number> | null): Float32Array {
  const {samples, channels, groups, groupOf} = l;
  const scale = new Float64Array(samples * channels);
  const offset = new Float64Array(samples * channels);
  for (let s = 0, i = 0; s < samples; s++) {
    for (let c = 0; c < channels; c++, i++) {
      const j = s * groups + groupOf[c];
      scale[i] = gamma[c] * a[j];
      offset[i] = (beta == null ? 0 : beta[c]) + gamma[c] * b[j] - mean[j] * scale[i];
    }
  }
  return affine(x, l, scale, offset);
}

export interface GradSums {
  /** Σ dy per channel. */
  channelDy: Float64Array;
  /** Σ dy·x̂ = Σ dy·(x − μ)/σ per channel. */
  channelDyXhat: Float64Array;
}

/**
 * The input gradient of a normalization and the sums behind its parameter
 * gradients, in two passes. With g = γ·r (batch renorm's r per channel; 1
 * otherwise) and means over each (sample, group):
 *   dx = (1/σ)·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)) = dy·p + x·q + k per (sample, channel).
 */
export function normalizationGradient(backend: unknown, inputs: Record<string, tf.TensorInfo>, axis: number,
    epsilon: number, groups?: number, r?: ArrayLike<number>): {dx: tf.TensorInfo; sums: GradSums} {
  const {dy, x, mean, variance, gamma} = inputs;
  const l = layoutOf(x.shape, axis, groups);
  const {samples, channels, groupOf} = l;
  const n = countPerGroup(l);
  const xs = read(backend, x);
  const dys = read(backend, dy);
  const g = read(backend, gamma);
  const gain = Float64Array.from(g, (v, c) => v * (r == null ? 1 : r[c]));
  const mu = Float64Array.from(read(backend, mean));
  const invStd = Float64Array.from(read(backend, variance), (v) => 1 / Math.sqrt(v + epsilon));
  const {sumDy, sumDyXc} = entryGradSums(dys, xs, l, mu);
  // Per (sample, group): Σ g·dy and Σ g·dy·(x − μ); per channel: Σ dy and Σ dy·x̂.
  const groupDy = new Float64Array(mu.length);
  const groupDyXc = new Float64Array(mu.length);
  const channelDy = new Float64Array(channels);
  const channelDyXhat = new Float64Array(channels);
  for (let s = 0, i = 0; s < samples; s++) {
    for (let c = 0; c < channels; c++, i++) {
      const j = s * l.groups + groupOf[c];
      groupDy[j] += gain[c] * sumDy[i];
      groupDyXc[j] += gain[c] * sumDyXc[i];
      channelDy[c] += sumDy[i];
      channelDyXhat[c] += sumDyXc[i] * invStd[j];
    }
  }
  const p = new Float64Array(samples * channels);
  const q = new Float64Array(samples * channels);
  const k = new Float64Array(samples * channels);
  for (let s = 0, i = 0; s < samples; s++) {
    for (let c = 0; c < channels; c++, i++) {
      const j = s * l.groups + groupOf[c];
      const t = invStd[j];
      p[i] = gain[c] * t;
      q[i] = -t * t * t * groupDyXc[j] / n;
      k[i] = -t * groupDy[j] / n - mu[j] * q[i];
    }
  }
  return {dx: output(backend, x.shape, affine2(dys, xs, l, p, q, k)), sums: {channelDy, channelDyXhat}};
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
