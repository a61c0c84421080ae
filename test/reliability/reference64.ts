/**
 * Float64 references for one training step of each layer, written from
 * SPEC.md (§2 BN, §3 Batch Renormalization, §4 Group Normalization) with
 * plain loops: no tfjs ops. The per-channel primitives come from
 * test/helpers/reference.ts.
 */
import {channelMoments, channelOf, Ref} from '../helpers/reference';

export interface Affine {
  gamma?: number[];
  beta?: number[];
}

const ema = (old: number[], value: number[], momentum: number) =>
  old.map((o, k) => momentum * o + (1 - momentum) * value[k]);

/** y = γ·(x̂·r + d) + β per channel, x̂ = (x − μ)/√(σ² + ε). */
function renormalize(x: Ref, axis: number, mean: number[], variance: number[], eps: number,
    r: number[], d: number[], {gamma, beta}: Affine): Ref {
  const out = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const k = channelOf(x.shape, axis, i);
    const xhat = (v - mean[k]) / Math.sqrt(variance[k] + eps);
    out[i] = (gamma ? gamma[k] : 1) * (xhat * r[k] + d[k]) + (beta ? beta[k] : 0);
  });
  return {shape: x.shape, data: out};
}

export interface BnState {
  movingMean: number[];
  movingVariance: number[];
}

/** One BatchNormalization training step: output and updated moving statistics. */
export function bnStep(x: Ref, axis: number, eps: number, momentum: number, affine: Affine, state: BnState):
    {y: Ref} & BnState {
  const m = channelMoments(x, axis);
  const ones = m.mean.map(() => 1);
  const zeros = m.mean.map(() => 0);
  return {
    y: renormalize(x, axis, m.mean, m.variance, eps, ones, zeros, affine),
    movingMean: ema(state.movingMean, m.mean, momentum),
    movingVariance: ema(state.movingVariance, m.variance, momentum),
  };
}

export interface BrnState extends BnState {
  movingStddev: number[];
  renormMean: number[];
  renormStddev: number[];
}

export interface Clipping {
  rmin: number;
  rmax: number;
  dmax: number;
}

/** The renorm corrections r, d from the renorm statistics before this step (SPEC.md §3 steps 1–2). */
export function renormCorrections(mean: number[], variance: number[], eps: number, clip: Clipping,
    state: Pick<BrnState, 'renormMean' | 'renormStddev'>): {r: number[]; d: number[]} {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  const s = state.renormStddev.map((v) => Math.max(v, Math.sqrt(eps)));
  return {
    r: variance.map((v, k) => clamp(Math.sqrt(v + eps) / s[k], clip.rmin, clip.rmax)),
    d: mean.map((v, k) => clamp((v - state.renormMean[k]) / s[k], -clip.dmax, clip.dmax)),
  };
}

/** One Batch Renormalization training step (SPEC.md §3), Keras's update order. */
export function brnStep(x: Ref, axis: number, eps: number, momentum: number, renormMomentum: number,
    clip: Clipping, affine: Affine, state: BrnState): {y: Ref} & BrnState {
  const m = channelMoments(x, axis);
  const {r, d} = renormCorrections(m.mean, m.variance, eps, clip, state);
  const sigma = m.variance.map((v) => Math.sqrt(v + eps));
  const movingStddev = ema(state.movingStddev, sigma, momentum);
  return {
    y: renormalize(x, axis, m.mean, m.variance, eps, r, d, affine),
    renormMean: ema(state.renormMean, m.mean, renormMomentum),
    renormStddev: ema(state.renormStddev, sigma, renormMomentum),
    movingMean: ema(state.movingMean, m.mean, momentum),
    movingStddev,
    movingVariance: movingStddev.map((s) => Math.max(s * s - eps, 0)),
  };
}

/**
 * Group Normalization (SPEC.md §4): statistics per (sample, group) over the
 * group's channels and every other non-batch axis.
 */
export function gnForward(x: Ref, axis: number, groups: number, eps: number, {gamma, beta}: Affine): Ref {
  const c = x.shape[axis];
  const perSample = x.data.length / x.shape[0];
  const groupOf = (i: number) => Math.floor(channelOf(x.shape, axis, i) / (c / groups));
  const slot = (i: number) => Math.floor(i / perSample) * groups + groupOf(i);
  const n = x.shape[0] * groups;
  const sum = new Float64Array(n);
  const count = new Float64Array(n);
  x.data.forEach((v, i) => { sum[slot(i)] += v; count[slot(i)]++; });
  const mean = sum.map((s, j) => s / count[j]);
  const sq = new Float64Array(n);
  x.data.forEach((v, i) => { sq[slot(i)] += (v - mean[slot(i)]) ** 2; });
  const out = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const k = channelOf(x.shape, axis, i);
    const j = slot(i);
    out[i] = (gamma ? gamma[k] : 1) * (v - mean[j]) / Math.sqrt(sq[j] / count[j] + eps) + (beta ? beta[k] : 0);
  });
  return {shape: x.shape, data: out};
}

/** Central finite differences of f at v, for the indices given (all by default). */
export function finiteDifferences(f: (v: number[]) => number, v: number[], indices = v.map((_, i) => i)): number[] {
  return indices.map((i) => {
    const h = 1e-5 * Math.max(1, Math.abs(v[i]));
    const up = [...v]; up[i] += h;
    const dn = [...v]; dn[i] -= h;
    return (f(up) - f(dn)) / (2 * h);
  });
}
