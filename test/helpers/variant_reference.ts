/**
 * Float64 references for group normalization and Batch Renormalization,
 * written from the papers' and Keras's formulas with plain loops (no tfjs ops),
 * tf.keras's ghost batch normalization, plus central finite differences for
 * gradient checks.
 */
import {channelMoments, channelOf, Ref} from './reference';

/** Group normalization in float64: statistics per (sample, group), γ and β per channel. */
export function groupNormRef(x: Ref, axis: number, groups: number, eps: number, gamma?: number[], beta?: number[]):
    {y: Ref; mean: number[][]; variance: number[][]} {
  const n = x.shape[0];
  const c = x.shape[axis];
  const g = groups === -1 ? c : groups;
  const perSample = x.data.length / n;
  const groupOf = (i: number) => [Math.floor(i / perSample), Math.floor(channelOf(x.shape, axis, i) / (c / g))];
  const zeros = () => Array.from({length: n}, () => new Array(g).fill(0));
  const sum = zeros();
  const count = zeros();
  x.data.forEach((v, i) => { const [s, k] = groupOf(i); sum[s][k] += v; count[s][k]++; });
  const mean = sum.map((row, s) => row.map((v, k) => v / count[s][k]));
  const sq = zeros();
  x.data.forEach((v, i) => { const [s, k] = groupOf(i); sq[s][k] += (v - mean[s][k]) ** 2; });
  const variance = sq.map((row, s) => row.map((v, k) => v / count[s][k]));
  const y = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const [s, k] = groupOf(i);
    const ch = channelOf(x.shape, axis, i);
    y[i] = (gamma ? gamma[ch] : 1) * (v - mean[s][k]) / Math.sqrt(variance[s][k] + eps) + (beta ? beta[ch] : 0);
  });
  return {y: {shape: x.shape, data: y}, mean, variance};
}

/** Keras's Batch Renormalization state: the seven weights, in Keras order. */
export interface RenormState {
  gamma: number[];
  beta: number[];
  movingMean: number[];
  movingVariance: number[];
  movingStddev: number[];
  renormMean: number[];
  renormStddev: number[];
}

export interface RenormConfig {
  axis: number;
  eps: number;
  momentum: number;
  renormMomentum: number;
  rmin: number;
  rmax: number;
  dmax: number;
}

/**
 * One Keras training step of Batch Renormalization (tf.keras 2.x
 * `_renorm_correction_and_moments` and the renorm branch of `call`), in float64.
 * `fixed` replaces the r and d it would compute (for finite differences, where
 * they are constants); `moments` replaces the batch moments (masked moments).
 * Returns the output, r and d, and the updated state.
 */
export function renormStepRef(x: Ref, s: RenormState, cfg: RenormConfig, fixed?: {r: number[]; d: number[]},
    moments: {mean: number[]; variance: number[]} = channelMoments(x, cfg.axis)):
    {y: Ref; r: number[]; d: number[]; next: RenormState} {
  const {mean, variance} = moments;
  const stddev = variance.map((v) => Math.sqrt(v + cfg.eps));
  const denom = s.renormStddev.map((v) => Math.max(v, Math.sqrt(cfg.eps)));
  const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  const r = fixed?.r ?? stddev.map((v, k) => clip(v / denom[k], cfg.rmin, cfg.rmax));
  const d = fixed?.d ?? mean.map((v, k) => clip((v - s.renormMean[k]) / denom[k], -cfg.dmax, cfg.dmax));
  const y = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const k = channelOf(x.shape, cfg.axis, i);
    y[i] = s.gamma[k] * ((v - mean[k]) / stddev[k] * r[k] + d[k]) + s.beta[k];
  });
  // Keras's assign_moving_average: var −= (var − value)·(1 − momentum).
  const ema = (old: number[], value: number[], m: number) => old.map((v, k) => v - (v - value[k]) * (1 - m));
  const movingStddev = ema(s.movingStddev, stddev, cfg.momentum);
  const next: RenormState = {
    gamma: s.gamma,
    beta: s.beta,
    movingMean: ema(s.movingMean, mean, cfg.momentum),
    movingVariance: movingStddev.map((v) => Math.max(v * v - cfg.eps, 0)),
    movingStddev,
    renormMean: ema(s.renormMean, mean, cfg.renormMomentum),
    renormStddev: ema(s.renormStddev, stddev, cfg.renormMomentum),
  };
  return {y: {shape: x.shape, data: y}, r, d, next};
}

export interface GhostConfig {
  eps: number;
  axis: number;
  virtualBatchSize: number;
  momentum: number;
  /** Batch Renormalization (tf.keras renorm=True) with these clipping limits and renorm_momentum. */
  renorm?: {rmin: number; rmax: number; dmax: number; momentum: number};
}

/**
 * One tf.keras 2.x training step of BatchNormalization(virtual_batch_size=v),
 * in float64, written from tf_keras/layers/normalization/batch_normalization.py
 * (v2.17.0) `call`: x is reshaped to [v, B/v, ...] (so sample n sits at
 * [n div (B/v), n mod (B/v)]); moments reduce over every axis but the channel
 * axis and the B/v axis (`del reduction_axes[1]`); the moving statistics and,
 * with renorm, r and d use the means over the B/v axis of the ghost means and
 * variances (`tf.reduce_mean(mean, axis=1)`). `fixed` replaces r and d (they
 * are stop_gradient constants, for finite differences).
 */
export function kerasGhostStep(x: Ref, s: RenormState, cfg: GhostConfig, fixed?: {r: number[]; d: number[]}):
    {y: Ref; r: number[]; d: number[]; ghostMean: number[][]; next: RenormState} {
  const batch = x.shape[0];
  const ghosts = batch / cfg.virtualBatchSize;
  if (!Number.isInteger(ghosts)) throw new Error('Keras: Input to reshape is a tensor with ... values');
  const c = x.shape[cfg.axis];
  const perSample = x.data.length / batch;
  // Index along the reshaped axis 1 (the ghost batch) of flat element i.
  const ghostOf = (i: number) => Math.floor(i / perSample) % ghosts;
  const table = () => Array.from({length: ghosts}, () => new Array(c).fill(0));
  const sum = table();
  const count = table();
  x.data.forEach((v, i) => { const j = ghostOf(i); const k = channelOf(x.shape, cfg.axis, i); sum[j][k] += v; count[j][k]++; });
  const mean = sum.map((row, j) => row.map((v, k) => v / count[j][k]));
  const sq = table();
  x.data.forEach((v, i) => { const j = ghostOf(i); const k = channelOf(x.shape, cfg.axis, i); sq[j][k] += (v - mean[j][k]) ** 2; });
  const variance = sq.map((row, j) => row.map((v, k) => v / count[j][k]));
  const overGhosts = (t: number[][]) => t[0].map((_, k) => t.reduce((a, row) => a + row[k], 0) / ghosts);
  const newMean = overGhosts(mean);
  const newVariance = overGhosts(variance);
  let r = new Array(c).fill(1);
  let d = new Array(c).fill(0);
  const renorm = cfg.renorm;
  const stddev = newVariance.map((v) => Math.sqrt(v + cfg.eps));
  if (renorm != null) {
    const denom = s.renormStddev.map((v) => Math.max(v, Math.sqrt(cfg.eps)));
    const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
    r = stddev.map((v, k) => clip(v / denom[k], renorm.rmin, renorm.rmax));
    d = newMean.map((v, k) => clip((v - s.renormMean[k]) / denom[k], -renorm.dmax, renorm.dmax));
  }
  if (fixed != null) ({r, d} = fixed);
  const y = new Float64Array(x.data.length);
  x.data.forEach((v, i) => {
    const j = ghostOf(i);
    const k = channelOf(x.shape, cfg.axis, i);
    y[i] = s.gamma[k] * ((v - mean[j][k]) / Math.sqrt(variance[j][k] + cfg.eps) * r[k] + d[k]) + s.beta[k];
  });
  // _assign_moving_average: var −= (var − value)·(1 − momentum).
  const ema = (old: number[], value: number[], m: number) => old.map((v, k) => v - (v - value[k]) * (1 - m));
  const next = {...s, movingMean: ema(s.movingMean, newMean, cfg.momentum)};
  if (renorm == null) {
    next.movingVariance = ema(s.movingVariance, newVariance, cfg.momentum);
  } else {
    next.movingStddev = ema(s.movingStddev, stddev, cfg.momentum);
    next.movingVariance = next.movingStddev.map((v) => Math.max(v * v - cfg.eps, 0));
    next.renormMean = ema(s.renormMean, newMean, renorm.momentum);
    next.renormStddev = ema(s.renormStddev, stddev, renorm.momentum);
  }
  return {y: {shape: x.shape, data: y}, r, d, ghostMean: mean, next};
}

/** Central finite differences of f at v, step 1e-5 relative to the value. */
export function centralDifferences(f: (v: number[]) => number, v: number[]): number[] {
  return v.map((_, i) => {
    const h = 1e-5 * Math.max(1, Math.abs(v[i]));
    const up = [...v];
    up[i] += h;
    const down = [...v];
    down[i] -= h;
    return (f(up) - f(down)) / (2 * h);
  });
}

/** Σ w·y, the scalar loss the gradient checks differentiate. */
export function weightedSum(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i] * w[i];
  return s;
}
