/**
 * Float64 references written independently of the package: plain loops over
 * nested index arithmetic, no tfjs ops. Tests compare the package against these.
 */
export interface Ref {
  shape: number[];
  data: Float64Array;
}

export function ref(shape: number[], data: ArrayLike<number>): Ref {
  return {shape: [...shape], data: Float64Array.from(data)};
}

/** Deterministic pseudo-random data (mulberry32), mean `mean`, roughly unit spread times `scale`. */
export function randomData(n: number, seed: number, mean = 0, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = mean + scale * (2 * u - 1) * Math.sqrt(3);
  }
  return out;
}

/** Index of channel c for flat element i of a tensor of `shape` with channel axis `axis`. */
export function channelOf(shape: number[], axis: number, i: number): number {
  let inner = 1;
  for (let k = axis + 1; k < shape.length; k++) inner *= shape[k];
  return Math.floor(i / inner) % shape[axis];
}

/** Per-channel mean and biased variance, two-pass in float64. */
export function channelMoments(x: Ref, axis: number): {mean: number[]; variance: number[]; count: number} {
  const c = x.shape[axis];
  const sum = new Array(c).fill(0);
  const cnt = new Array(c).fill(0);
  x.data.forEach((v, i) => { const k = channelOf(x.shape, axis, i); sum[k] += v; cnt[k]++; });
  const mean = sum.map((s, k) => s / cnt[k]);
  const sq = new Array(c).fill(0);
  x.data.forEach((v, i) => { const k = channelOf(x.shape, axis, i); sq[k] += (v - mean[k]) ** 2; });
  return {mean, variance: sq.map((s, k) => s / cnt[k]), count: cnt[0]};
}

/** y = gamma·(x − mean)/√(var + eps) + beta per channel, in float64. */
export function normalizeRef(x: Ref, axis: number, mean: number[], variance: number[], eps: number,
    gamma?: number[], beta?: number[]): Ref {
  const out = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const k = channelOf(x.shape, axis, i);
    out[i] = (gamma ? gamma[k] : 1) * (v - mean[k]) / Math.sqrt(variance[k] + eps) + (beta ? beta[k] : 0);
  });
  return {shape: x.shape, data: out};
}

/** Largest |a − b| / max(1, |b|) over all elements: relative error with an absolute floor. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}
