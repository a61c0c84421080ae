/**
 * The full-size loops every fused cpu kernel is built from, in float64.
 *
 * They walk the [outer, channels, inner] view (../view.ts) with outer split
 * into samples × rows. Statistics are kept per (sample, group), index
 * j = s·groups + group(c): batch norm has one sample and one channel per
 * group, group norm N samples and C/G consecutive channels per group.
 * Output passes fold their coefficients per channel for one sample at a time.
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
  const groupOf = new Int32Array(channels);
  for (let c = 0; c < channels; c++) groupOf[c] = Math.floor(c / (channels / g));
  return {samples, rows: outer / samples, channels, inner, groups: g, groupOf};
}

/** Values behind each statistic. */
function countPerGroup(l: Layout): number {
  return l.rows * l.inner * l.channels / l.groups;
}

export interface Moments {
  mean: Float64Array;
  /** Biased variance. */
  variance: Float64Array;
}

/** Values per block of a channels-last sample that the statistics pass walks column by column (32 KB). */
const BLOCK = 8192;

/**
 * Mean and biased variance per (sample, group) in one pass: float64 sums of
 * x − k and (x − k)² with k one of the group's own values (its first), so
 * var = (Σ(x − k)² − (Σ(x − k))²/n)/n does not cancel even when the mean
 * dwarfs the spread (|μ − k| is a few σ, not |μ|).
 */
export function groupMoments(x: Float32Array, l: Layout): Moments {
  const {samples, rows, channels, inner, groups, groupOf} = l;
  const size = channels / groups;
  const shift = new Float64Array(samples * groups);
  for (let s = 0; s < samples; s++) {
    for (let g = 0; g < groups; g++) shift[s * groups + g] = x[s * rows * channels * inner + g * size * inner];
  }
  const sum = new Float64Array(samples * groups);
  const sumSq = new Float64Array(samples * groups);
  if (inner === 1 && rows > 1) {
    // Channels-last: one channel at a time down a cache-sized block of rows,
    // so the sums stay in registers (row by row they would live in memory).
    const blockRows = Math.max(1, Math.floor(BLOCK / channels));
    for (let s = 0; s < samples; s++) {
      const sampleEnd = (s + 1) * rows * channels;
      for (let start = s * rows * channels; start < sampleEnd; start += blockRows * channels) {
        const end = Math.min(sampleEnd, start + blockRows * channels);
        for (let c = 0; c < channels; c++) {
          const j = s * groups + groupOf[c];
          addShiftedSums(x, start + c, end, channels, shift[j], sum, sumSq, j);
        }
      }
    }
  } else {
    // Otherwise a group's values in one row are one contiguous run: its channels times inner.
    const run = size * inner;
    for (let s = 0, i = 0; s < samples; s++) {
      for (let row = 0; row < rows; row++) {
        for (let j = s * groups; j < (s + 1) * groups; j++, i += run) addShiftedSums(x, i, i + run, 1, shift[j], sum, sumSq, j);
      }
    }
  }
  const n = countPerGroup(l);
  const mean = new Float64Array(samples * groups);
  const variance = new Float64Array(samples * groups);
  for (let j = 0; j < mean.length; j++) {
    mean[j] = shift[j] + sum[j] / n;
    // Rounding can take it just below 0 when a group's values are (nearly) all equal.
    variance[j] = Math.max(0, (sumSq[j] - sum[j] * sum[j] / n) / n);
  }
  return {mean, variance};
}

/** Adds Σ (x[i] − k) and Σ (x[i] − k)² over i = start, start + step, … < end to sum[j] and sumSq[j]. */
function addShiftedSums(x: Float32Array, start: number, end: number, step: number, k: number,
    sum: Float64Array, sumSq: Float64Array, j: number): void {
  // Two chains of sums: the adds' latency, not memory, bounds a single chain.
  let a0 = 0;
  let b0 = 0;
  let a1 = 0;
  let b1 = 0;
  let i = start;
  for (; i + step < end; i += 2 * step) {
    const d0 = x[i] - k;
    const d1 = x[i + step] - k;
    a0 += d0;
    b0 += d0 * d0;
    a1 += d1;
    b1 += d1 * d1;
  }
  if (i < end) {
    const d = x[i] - k;
    a0 += d;
    b0 += d * d;
  }
  sum[j] += a0 + a1;
  sumSq[j] += b0 + b1;
}

// The loops below work one sample at a time (a contiguous block of
// rows × channels × inner values) with per-channel coefficients for it, so
// their scratch is per channel and the second pass rereads a cache-warm block.

/** out = x·scale + offset over one sample's block starting at `start`. */
function affine(x: Float32Array, out: Float32Array, start: number, l: Layout, scale: Float64Array,
    offset: Float64Array): void {
  const {rows, channels, inner} = l;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) out[i] = x[i] * scale[c] + offset[c];
      continue;
    }
    for (let c = 0; c < channels; c++) {
      const a = scale[c];
      const b = offset[c];
      for (const end = i + inner; i < end; i++) out[i] = x[i] * a + b;
    }
  }
}

/** out = dy·p + x·q + k over one sample's block starting at `start`. */
function affine2(dy: Float32Array, x: Float32Array, out: Float32Array, start: number, l: Layout,
    p: Float64Array, q: Float64Array, k: Float64Array): void {
  const {rows, channels, inner} = l;
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) out[i] = dy[i] * p[c] + x[i] * q[c] + k[c];
      continue;
    }
    for (let c = 0; c < channels; c++) {
      const a = p[c];
      const b = q[c];
      const e = k[c];
      for (const end = i + inner; i < end; i++) out[i] = dy[i] * a + x[i] * b + e;
    }
  }
}

/** Σ dy and Σ dy·(x − center) per channel over one sample's block, into sumDy and sumDyXc. */
function gradSums(dy: Float32Array, x: Float32Array, start: number, l: Layout, center: Float64Array,
    sumDy: Float64Array, sumDyXc: Float64Array): void {
  const {rows, channels, inner} = l;
  sumDy.fill(0);
  sumDyXc.fill(0);
  let i = start;
  for (let row = 0; row < rows; row++) {
    if (inner === 1) {
      for (let c = 0; c < channels; c++, i++) {
        sumDy[c] += dy[i];
        sumDyXc[c] += dy[i] * (x[i] - center[c]);
      }
      continue;
    }
    for (let c = 0; c < channels; c++) {
      const m = center[c];
      let a = 0;
      let b = 0;
      for (const end = i + inner; i < end; i++) {
        a += dy[i];
        b += dy[i] * (x[i] - m);
      }
      sumDy[c] += a;
      sumDyXc[c] += b;
    }
  }
}

/**
 * y = γ_c·((x − μ_j)·a_j + b_j) + β_c, with μ, a, b per (sample, group) j and
 * γ, β per channel (β null is 0): every kernel's normalization.
 */
export function normalize(x: Float32Array, l: Layout, mean: Float64Array, a: Float64Array, b: Float64Array,
    gamma: Float32Array, beta: Float32Array | null): Float32Array {
  const {samples, rows, channels, inner, groups} = l;
  const size = channels / groups;
  const out = new Float32Array(x.length);
  const scale = new Float64Array(channels);
  const offset = new Float64Array(channels);
  const shift = beta ?? new Float32Array(channels);
  if (rows * inner === 1) {
    // One value per (sample, channel), as in a [N, C] input: no coefficients worth folding.
    for (let s = 0, i = 0; s < samples; s++) {
      for (let j = s * groups, c = 0; j < (s + 1) * groups; j++) {
        // Hoisted: V8 would reload them for every value.
        const mj = mean[j];
        const aj = a[j];
        const bj = b[j];
        for (const end = c + size; c < end; c++, i++) out[i] = gamma[c] * ((x[i] - mj) * aj + bj) + shift[c];
      }
    }
    return out;
  }
  for (let s = 0; s < samples; s++) {
    for (let j = s * groups, c = 0; j < (s + 1) * groups; j++) {
      const aj = a[j];
      const bj = b[j];
      const mj = mean[j];
      for (const end = c + size; c < end; c++) {
        scale[c] = gamma[c] * aj;
        offset[c] = shift[c] + gamma[c] * bj - mj * scale[c];
      }
    }
    affine(x, out, s * rows * channels * inner, l, scale, offset);
  }
  return out;
}

export interface GradSums {
  /** Σ dy per channel. */
  channelDy: Float64Array;
  /** Σ dy·x̂ = Σ dy·(x − μ)/σ per channel. */
  channelDyXhat: Float64Array;
}

/** A float64 copy (TypedArray.from and map take a slow generic path in V8). */
function float64(values: Float32Array, f?: (v: number) => number): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f == null ? values[i] : f(values[i]);
  return out;
}

/**
 * The input gradient of a normalization and the sums behind its parameter
 * gradients, in two passes per sample. With g = γ·r (batch renorm's r per
 * channel; 1 otherwise) and means over each (sample, group):
 *   dx = (1/σ)·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)) = dy·p + x·q + k per channel.
 */
export function normalizationGradient(backend: unknown, inputs: Record<string, tf.TensorInfo>, axis: number,
    epsilon: number, groups?: number, r?: Float32Array): {dx: tf.TensorInfo; sums: GradSums} {
  const {dy, x, mean, variance, gamma} = inputs;
  const l = layoutOf(x.shape, axis, groups);
  const {samples, rows, channels, inner} = l;
  const size = channels / l.groups;
  const n = countPerGroup(l);
  const xs = read(backend, x);
  const dys = read(backend, dy);
  const gain = float64(read(backend, gamma));
  if (r != null) for (let c = 0; c < channels; c++) gain[c] *= r[c];
  const mu = float64(read(backend, mean));
  const invStd = float64(read(backend, variance), (v) => 1 / Math.sqrt(v + epsilon));
  const dx = new Float32Array(xs.length);
  const channelDy = new Float64Array(channels);
  const channelDyXhat = new Float64Array(channels);
  // dx = dy·g/σ + (x − μ)·q + k₀ per group, from Σ g·dy and Σ g·dy·(x − μ) over the group:
  // q = −Σ g·dy·(x − μ)/(n·σ³), k₀ = −Σ g·dy/(n·σ).
  const qOf = (t: number, groupDyXc: number) => -t * t * t * groupDyXc / n;
  const kOf = (t: number, groupDy: number) => -t * groupDy / n;
  if (rows * inner === 1) {
    // One value per (sample, channel), as in a [N, C] input: each group is one contiguous run.
    for (let s = 0, i0 = 0; s < samples; s++) {
      for (let j = s * l.groups, c0 = 0; j < (s + 1) * l.groups; j++, c0 += size, i0 += size) {
        const m = mu[j];
        const t = invStd[j];
        let groupDy = 0;
        let groupDyXc = 0;
        for (let c = c0, i = i0; c < c0 + size; c++, i++) {
          groupDy += gain[c] * dys[i];
          groupDyXc += gain[c] * dys[i] * (xs[i] - m);
          channelDy[c] += dys[i];
          channelDyXhat[c] += dys[i] * (xs[i] - m) * t;
        }
        const qj = qOf(t, groupDyXc);
        const kj = kOf(t, groupDy);
        for (let c = c0, i = i0; c < c0 + size; c++, i++) dx[i] = dys[i] * gain[c] * t + (xs[i] - m) * qj + kj;
      }
    }
    return {dx: output(backend, x.shape, dx), sums: {channelDy, channelDyXhat}};
  }
  // Per-channel scratch for the current sample.
  const [center, sumDy, sumDyXc, p, q, k] = Array.from({length: 6}, () => new Float64Array(channels));
  for (let s = 0; s < samples; s++) {
    const start = s * rows * channels * inner;
    for (let j = s * l.groups, c = 0; j < (s + 1) * l.groups; j++) {
      for (const end = c + size; c < end; c++) center[c] = mu[j];
    }
    gradSums(dys, xs, start, l, center, sumDy, sumDyXc);
    for (let j = s * l.groups, c = 0; j < (s + 1) * l.groups; j++) {
      const t = invStd[j];
      let groupDy = 0;
      let groupDyXc = 0;
      for (let cc = c; cc < c + size; cc++) {
        groupDy += gain[cc] * sumDy[cc];
        groupDyXc += gain[cc] * sumDyXc[cc];
        channelDy[cc] += sumDy[cc];
        channelDyXhat[cc] += sumDyXc[cc] * t;
      }
      const qj = qOf(t, groupDyXc);
      const kj = kOf(t, groupDy) - mu[j] * qj;
      for (const end = c + size; c < end; c++) {
        p[c] = gain[c] * t;
        q[c] = qj;
        k[c] = kj;
      }
    }
    affine2(dys, xs, dx, start, l, p, q, k);
  }
  return {dx: output(backend, x.shape, dx), sums: {channelDy, channelDyXhat}};
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
  // The constructor copies typed arrays natively; Float32Array.from takes V8's slow generic path.
  const data = values instanceof Float32Array ? values : new Float32Array(values);
  return (backend as CpuBackend).makeTensorInfo(shape, 'float32', data);
}
