/**
 * Per-channel batch normalization ops: fused kernels on cpu, composites of
 * tfjs ops elsewhere (./registry.ts), one hand-written backward for both.
 *
 * Forward (Ioffe & Szegedy 2015; Batch Renormalization, Ioffe 2017, adds r, d):
 *   μ = mean(x), σ² = mean((x − μ)²) (biased), x̂ = (x − μ)/√(σ² + ε)
 *   y = γ·(x̂·r + d) + β
 * Plain BN has r = 1, d = 0. With renorm statistics (μ_R, σ_R) given:
 *   s = max(σ_R, √ε), r = clip(√(σ² + ε)/s, rmin, rmax), d = clip((μ − μ_R)/s, −dmax, dmax)
 * Backward of y, with r and d constants (Keras's stop_gradient) and g = γ·r:
 *   dx = (1/√(σ²+ε))·(dy·g − mean(dy·g) − x̂·mean(dy·g·x̂))
 *   dγ = Σ dy·(x̂·r + d),  dβ = Σ dy
 * The statistics outputs (μ, σ², r, d) carry their true gradients too (with
 * respect to x, and for r and d to μ_R and σ_R; zero where clipped): on cpu
 * folded into the fused backward, elsewhere by autodiff of the tfjs ops.
 *
 * Inference folds scale = γ/√(σ²+ε) and offset = β − μ·scale per channel once
 * and applies y = x·scale + offset in one pass.
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationConfigError} from '../errors';
import {
  checkChannelInput, checkChannelVector, checkEpsilon, checkOptions, checkStatisticsGradients,
} from './checks';
import {meanPerSampleChannel, recordedReduction, sumPerSampleChannel} from './reduce';
import {defineComposite, runKernel} from './registry';
import {ChannelView, channelView, paramShape, viewShape} from './view';

export const BATCH_NORM_TRAINING = 'TfjsNormalizationBatchNormTraining';
/** The same kernel with renorm statistics, whose gradient also saves them. */
export const BATCH_RENORM_TRAINING = 'TfjsNormalizationBatchRenormTraining';
export const BATCH_NORM_TRAINING_GRAD = 'TfjsNormalizationBatchNormTrainingGrad';
export const CHANNEL_SCALE_OFFSET = 'TfjsNormalizationChannelScaleOffset';

/** Renorm statistics and clipping for Batch Renormalization; absent limits are Infinity. */
export interface RenormArgs {
  /** μ_R, shape [channels]. */
  mean: tf.Tensor1D;
  /** σ_R, shape [channels]. */
  stddev: tf.Tensor1D;
  rmin: number;
  rmax: number;
  dmax: number;
}

export interface BatchNormTrainingArgs {
  /** The channel axis; negative counts from the end; not the batch axis 0. */
  axis: number;
  epsilon: number;
  /** Batch Renormalization: correct the batch statistics toward these. */
  renorm?: RenormArgs;
  /**
   * Whether the statistics outputs (mean, variance, r, d) carry gradients.
   * Default true. false, for callers that only read them (the layers' moving
   * averages): the backward then does only y's work (on cpu the fused backward
   * skips folding the statistics' and r/d's upstream gradients, which tfjs
   * hands it as zeros, not null; on the composite path the statistics are
   * computed inside y's recorded op, so x is saved once instead of twice, a
   * copy each on wasm), and a gradient taken through a statistic throws a
   * NormalizationConfigError naming this option. y's gradients are the same.
   * (On the composite path the statistics then leave y's forward kept, which
   * tfjs's kernel leak check, on only with the IS_TEST flag, reports as a leak.)
   */
  statisticsGradients?: boolean;
}

export interface BatchNormTrainingResult {
  y: tf.Tensor;
  /** Batch mean per channel. */
  mean: tf.Tensor1D;
  /** Biased batch variance per channel. */
  variance: tf.Tensor1D;
  /** Renorm correction r per channel (ones for plain BN). */
  r: tf.Tensor1D;
  /** Renorm correction d per channel (zeros for plain BN). */
  d: tf.Tensor1D;
}

/**
 * Normalizes `x` (float32, rank >= 2) with its own per-channel statistics;
 * `gamma`/`beta` of shape [channels] may be null (scale/center off). Every
 * output carries its gradient (see the file comment) unless
 * `statisticsGradients` is false.
 * @throws NormalizationConfigError for a missing `args`, an epsilon that is not
 *   a finite number > 0, or a statisticsGradients that is not a boolean.
 * @throws NormalizationShapeError for a non-float32 x, rank < 2, an axis out
 *   of range or 0, or gamma, beta, renorm.mean, renorm.stddev not of shape [channels].
 */
export function batchNormTraining(
    x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: BatchNormTrainingArgs): BatchNormTrainingResult {
  const op = 'batchNormTraining';
  checkOptions(op, args, 'axis, epsilon, renorm?, statisticsGradients?');
  const axis = checkBatchNormInputs(op, x, gamma, beta, args.axis, args.renorm);
  const statisticsGradients = checkStatisticsGradients(op, args.statisticsGradients);
  const renorm = renormKernelArgs(args.renorm);
  const [y, mean, variance, r, d] = runWithGamma(args.renorm == null ? BATCH_NORM_TRAINING : BATCH_RENORM_TRAINING,
      x, gamma, axis, {beta, ...renorm.inputs}, {axis, epsilon: args.epsilon, statisticsGradients, ...renorm.attrs});
  const statistics = {mean, variance, r, d} as Omit<BatchNormTrainingResult, 'y'>;
  return {y, ...(statisticsGradients ? statistics : withoutGradients(op, x, statistics, STATISTICS_GRADIENTS_OFF))};
}

/**
 * Checks x, gamma, beta (null: off) and the renorm statistics of a
 * per-channel op; returns the channel axis resolved against x's rank.
 */
export function checkBatchNormInputs(op: string, x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    axis: number, renorm: RenormArgs | undefined): number {
  const resolved = checkChannelInput(op, x, axis);
  checkChannelVector(op, 'gamma', gamma, x, resolved, true);
  checkChannelVector(op, 'beta', beta, x, resolved, true);
  if (renorm != null) {
    checkChannelVector(op, 'renorm.mean', renorm.mean, x, resolved);
    checkChannelVector(op, 'renorm.stddev', renorm.stddev, x, resolved);
  }
  return resolved;
}

/** The kernel inputs and attributes of Batch Renormalization; without it, no inputs and no limits. */
export function renormKernelArgs(renorm: RenormArgs | undefined): {
  inputs: {renormMean?: tf.Tensor1D; renormStddev?: tf.Tensor1D}; attrs: {rmin: number; rmax: number; dmax: number};
} {
  return {
    inputs: {renormMean: renorm?.mean, renormStddev: renorm?.stddev},
    attrs: {rmin: renorm?.rmin ?? 0, rmax: renorm?.rmax ?? Infinity, dmax: renorm?.dmax ?? Infinity},
  };
}

/**
 * Runs a normalization kernel whose gradient saves gamma: a null gamma
 * (scale off) is passed as ones of x's channel count on `axis`.
 */
export function runWithGamma(kernelName: string, x: tf.Tensor, gamma: tf.Tensor1D | null, axis: number,
    inputs: Record<string, tf.Tensor | null | undefined>, attrs: Record<string, unknown>): tf.Tensor[] {
  const scale = gamma ?? tf.ones([x.shape[axis]]);
  const outputs = runKernel(kernelName, {x, gamma: scale, ...inputs}, attrs);
  if (gamma == null) scale.dispose();
  return outputs;
}

/**
 * The `statistics` outputs of an op as withoutGradient's (same names), the
 * originals disposed.
 */
export function withoutGradients<T extends Record<string, tf.Tensor>>(op: string, x: tf.Tensor, statistics: T,
    why: string, field?: string, value?: unknown): T {
  const guarded = Object.fromEntries(Object.entries(statistics).map(([name, statistic]) =>
    [name, withoutGradient(op, name, x, statistic, why, field, value)])) as T;
  tf.dispose(Object.values(statistics));
  return guarded;
}

/**
 * `statistic` (the op's output `name`) as an output whose gradient, if one is
 * ever taken through it, is an error saying `why` there is none (instead of
 * silent zeros on cpu, or tfjs's "Cannot compute gradient" elsewhere), naming
 * the option responsible (`field`, `value`). Recorded from x, so that tfjs's
 * tape reaches it; not called when only y is differentiated.
 */
function withoutGradient(op: string, name: string, x: tf.Tensor, statistic: tf.Tensor, why: string,
    field = 'statisticsGradients', value: unknown = false): tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => ({
    value: tf.clone(args[1] as tf.Tensor),
    gradFunc: (): tf.Tensor[] => {
      throw new NormalizationConfigError(op, field, value, `${op}: a gradient was taken through its '${name}' output, ${why}`);
    },
  }))(x, statistic);
}

/** Why a call with statisticsGradients: false has no statistics gradients. */
export const STATISTICS_GRADIENTS_OFF = 'computed with statisticsGradients: false, which gives only y\'s ' +
  'gradients; call the op with statisticsGradients: true (the default) to differentiate it.';

/**
 * y = x·scale + offset along `axis` (negative counts from the end), scale and
 * offset of shape [channels]; gradients for all three.
 * @throws NormalizationShapeError as batchNormTraining, for scale and offset.
 */
export function channelScaleOffset(x: tf.Tensor, scale: tf.Tensor1D, offset: tf.Tensor1D, axis: number): tf.Tensor {
  const op = 'channelScaleOffset';
  const resolved = checkChannelInput(op, x, axis);
  checkChannelVector(op, 'scale', scale, x, resolved);
  checkChannelVector(op, 'offset', offset, x, resolved);
  return runKernel(CHANNEL_SCALE_OFFSET, {x, scale, offset}, {axis: resolved})[0];
}

/**
 * Inference with given statistics (all of shape [channels]): fold once, then
 * one multiply-add pass over x.
 * @throws NormalizationConfigError for an epsilon that is not a finite number > 0.
 * @throws NormalizationShapeError as batchNormTraining, for mean and variance too.
 */
export function batchNormInference(
    x: tf.Tensor, mean: tf.Tensor1D, variance: tf.Tensor1D,
    gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, axis: number, epsilon: number): tf.Tensor {
  const op = 'batchNormInference';
  const resolved = checkChannelInput(op, x, axis);
  checkEpsilon(op, epsilon);
  checkChannelVector(op, 'mean', mean, x, resolved);
  checkChannelVector(op, 'variance', variance, x, resolved);
  checkChannelVector(op, 'gamma', gamma, x, resolved, true);
  checkChannelVector(op, 'beta', beta, x, resolved, true);
  return tf.tidy(() => {
    const {scale, offset} = foldScaleOffset(mean, variance, gamma, beta, epsilon);
    return channelScaleOffset(x, scale, offset, resolved);
  });
}

/**
 * Per-channel scale γ/√(σ²+ε) and offset β − μ·scale, so that y = x·scale + offset.
 * @throws NormalizationConfigError for an epsilon that is not a finite number > 0.
 */
export function foldScaleOffset(
    mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D | null,
    beta: tf.Tensor1D | null, epsilon: number): {scale: tf.Tensor1D; offset: tf.Tensor1D} {
  checkEpsilon('foldScaleOffset', epsilon);
  return tf.tidy(() => {
    let scale: tf.Tensor1D = tf.rsqrt(tf.add(variance, epsilon));
    if (gamma != null) scale = tf.mul(scale, gamma);
    let offset: tf.Tensor1D = tf.neg(tf.mul(mean, scale));
    if (beta != null) offset = tf.add(offset, beta);
    return {scale, offset};
  });
}

interface Attrs {
  axis: number;
  epsilon: number;
  rmin: number;
  rmax: number;
  dmax: number;
  /**
   * false: the composite computes the statistics unrecorded, and the fused
   * backward ignores their upstream gradients (default true).
   */
  statisticsGradients?: boolean;
}

/** 1 where v is not clipped by min(max(v, lo), hi), as tfjs differentiates that (ties pass). */
function notClipped(v: tf.Tensor, lo: number, hi: number): tf.Tensor {
  return tf.cast(tf.logicalAnd(tf.greaterEqual(v, lo), tf.lessEqual(tf.maximum(v, lo), hi)), 'float32');
}

/**
 * The gradients of r and d (per channel, from their definitions above) moved
 * onto the statistics they are computed from: μ, σ², μ_R and σ_R.
 */
function renormCorrectionGradients(saved: {mean: tf.Tensor; variance: tf.Tensor; renormMean: tf.Tensor;
  renormStddev: tf.Tensor}, upstream: {mean: tf.Tensor | null; variance: tf.Tensor | null; r: tf.Tensor | null;
  d: tf.Tensor | null}, attrs: Attrs) {
  const {mean, variance, renormMean, renormStddev} = saved;
  const floor = Math.sqrt(attrs.epsilon);
  const std = tf.sqrt(tf.add(variance, attrs.epsilon));
  const s = tf.maximum(renormStddev, floor);
  let meanGrad = upstream.mean ?? tf.zerosLike(mean);
  let varianceGrad = upstream.variance ?? tf.zerosLike(variance);
  let renormMeanGrad = tf.zerosLike(renormMean);
  let sGrad = tf.zerosLike(renormStddev);
  if (upstream.r != null) {
    // r = clip(std/s): ∂r/∂σ² = 1/(2·std·s), ∂r/∂s = −std/s².
    const rGrad = tf.mul(upstream.r, notClipped(tf.div(std, s), attrs.rmin, attrs.rmax));
    varianceGrad = tf.add(varianceGrad, tf.div(rGrad, tf.mul(tf.mul(std, s), 2)));
    sGrad = tf.sub(sGrad, tf.div(tf.mul(rGrad, std), tf.square(s)));
  }
  if (upstream.d != null) {
    // d = clip((μ − μ_R)/s): ∂d/∂μ = 1/s = −∂d/∂μ_R, ∂d/∂s = −(μ − μ_R)/s².
    const offset = tf.sub(mean, renormMean);
    const dGrad = tf.mul(upstream.d, notClipped(tf.div(offset, s), -attrs.dmax, attrs.dmax));
    meanGrad = tf.add(meanGrad, tf.div(dGrad, s));
    renormMeanGrad = tf.neg(tf.div(dGrad, s));
    sGrad = tf.sub(sGrad, tf.div(tf.mul(dGrad, offset), tf.square(s)));
  }
  // s = max(σ_R, √ε) passes its gradient to σ_R where σ_R >= √ε.
  const renormStddevGrad = tf.mul(sGrad, tf.cast(tf.greaterEqual(renormStddev, floor), 'float32'));
  return {meanGrad, varianceGrad, renormMeanGrad, renormStddevGrad};
}

/** The registered gradient of the fused kernels: every output's upstream gradient in one backward kernel. */
function batchNormTrainingGradient(dys: Array<tf.Tensor | null>, saved: tf.Tensor[], attrs: Attrs,
    withRenorm: boolean): Record<string, () => tf.Tensor> {
  const [dy, meanUpstream, varianceUpstream, rUpstream, dUpstream] = dys;
  const [x, gamma] = saved;
  const [renormMean, renormStddev] = withRenorm ? saved.slice(2, 4) : [null, null];
  const [mean, variance, r, d] = saved.slice(withRenorm ? 4 : 2);
  if (attrs.statisticsGradients === false) {
    // Only y's gradient: r and d are constants in it, so μ_R and σ_R get none.
    const [dx, dGamma, dBeta] = runKernel(BATCH_NORM_TRAINING_GRAD, {dy: dy ?? tf.zerosLike(x), x, mean, variance,
      gamma, r, d}, {axis: attrs.axis, epsilon: attrs.epsilon});
    return {x: () => dx, gamma: () => dGamma, beta: () => dBeta,
      renormMean: () => tf.zerosLike(renormMean!), renormStddev: () => tf.zerosLike(renormStddev!)};
  }
  const corrections = renormMean != null && renormStddev != null ?
    renormCorrectionGradients({mean, variance, renormMean, renormStddev},
        {mean: meanUpstream, variance: varianceUpstream, r: rUpstream, d: dUpstream}, attrs) : null;
  const [dx, dGamma, dBeta] = runKernel(BATCH_NORM_TRAINING_GRAD, {
    // Only the statistics may be used: y's upstream gradient is then 0.
    dy: dy ?? tf.zerosLike(x), x, mean, variance, gamma, r, d,
    meanGrad: corrections?.meanGrad ?? meanUpstream, varianceGrad: corrections?.varianceGrad ?? varianceUpstream,
  }, {axis: attrs.axis, epsilon: attrs.epsilon});
  return {
    x: () => dx, gamma: () => dGamma, beta: () => dBeta,
    renormMean: () => corrections!.renormMeanGrad, renormStddev: () => corrections!.renormStddevGrad,
  };
}

tf.registerGradient({
  kernelName: BATCH_NORM_TRAINING,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true, true, true, true],
  gradFunc: (dys, saved, attrs) =>
    batchNormTrainingGradient(dys as Array<tf.Tensor | null>, saved, attrs as unknown as Attrs, false),
});

tf.registerGradient({
  kernelName: BATCH_RENORM_TRAINING,
  inputsToSave: ['x', 'gamma', 'renormMean', 'renormStddev'],
  outputsToSave: [false, true, true, true, true],
  gradFunc: (dys, saved, attrs) =>
    batchNormTrainingGradient(dys as Array<tf.Tensor | null>, saved, attrs as unknown as Attrs, true),
});

/**
 * Σ over every axis but the channel axis, shaped to broadcast against `viewShape(view)`:
 * channels-last, the mean by average pooling times the count (./reduce.ts).
 */
function channelSum(t: tf.Tensor, view: ChannelView): tf.Tensor {
  return tf.tidy(() => tf.reshape(view.inner === 1 ?
    tf.mul(meanPerSampleChannel(t, 1, view.outer, view.channels, 1), view.outer) :
    sumPerSampleChannel(t, 1, view.outer, view.channels, view.inner), paramShape(view)));
}

/** The batch statistics of the composite, shaped to broadcast against `viewShape(view)`. */
interface CompositeStatistics {
  /** x − shift, full size, in the view's shape. */
  shifted: tf.Tensor;
  shiftedMean: tf.Tensor;
  mean: tf.Tensor;
  variance: tf.Tensor;
  std: tf.Tensor;
  r: tf.Tensor;
  d: tf.Tensor;
}

// The composites evaluate the same formulas as the fused kernels in float32
// tfjs ops, with every full-size reduction a matMul (./reduce.ts). The mean is
// taken in two steps (a shift, the first estimate, then the mean of x − shift)
// so that float32 sums stay accurate when the mean dwarfs the spread.
function compositeStatistics(x: tf.Tensor, view: ChannelView, attrs: Attrs,
    renormMean: tf.Tensor | undefined, renormStddev: tf.Tensor | undefined): CompositeStatistics {
  const {epsilon, rmin, rmax, dmax} = attrs;
  const pShape = paramShape(view);
  const count = view.outer * view.inner;
  // Differentiable tfjs ops where the tape records them: autodiff gives their gradients.
  const xv = tf.reshape(x, viewShape(view));
  const channelMean = recordedReduction((t) => tf.div(channelSum(t, view), count),
      (dy) => tf.broadcastTo(tf.div(dy, count), xv.shape));
  const shift = channelMean(xv);
  // x − shift as one recorded op that saves nothing (tfjs's Sub saves both inputs, a copy on wasm).
  const shifted = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [values, center] = args as tf.Tensor[];
    return {value: tf.sub(values, center), gradFunc: (dy: tf.Tensor) => [dy, tf.neg(channelSum(dy, view))]};
  })(xv, shift);
  const shiftedMean = channelMean(shifted);
  const mean = tf.add(shift, shiftedMean);
  // The shift is off by float32 summation error only, a small fraction of σ, so
  // var = mean(shifted²) − shiftedMean² cancels nothing: one same-shape square pass.
  // (relu: rounding could take a constant channel's variance just below 0.)
  const meanSquare = recordedReduction((t) => tf.div(channelSum(tf.square(t), view), count),
      (dy, [xSaved, shiftSaved]) => tf.mul(tf.sub(xSaved, shiftSaved), tf.mul(dy, 2 / count)), [xv, shift]);
  const variance = tf.relu(tf.sub(meanSquare(shifted), tf.square(shiftedMean)));
  const std = tf.sqrt(tf.add(variance, epsilon));
  let r: tf.Tensor = tf.onesLike(std);
  let d: tf.Tensor = tf.zerosLike(std);
  if (renormMean != null && renormStddev != null) {
    const s = tf.maximum(tf.reshape(renormStddev, pShape), Math.sqrt(epsilon));
    // minimum/maximum, not clipByValue: the wasm backend's clip returns uninitialized
    // memory when a limit is a double that rounds to ±0 in float32 (e.g. dmax 5e-324).
    const clip = (t: tf.Tensor, lo: number, hi: number) => tf.minimum(tf.maximum(t, lo), hi);
    r = clip(tf.div(std, s), rmin, rmax);
    d = clip(tf.div(tf.sub(mean, tf.reshape(renormMean, pShape)), s), -dmax, dmax);
  }
  return {shifted, shiftedMean, mean, variance, std, r, d};
}

function compositeBatchNormTraining(inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): tf.Tensor[] {
  const {x, gamma, beta, renormMean, renormStddev} = inputs;
  const typedAttrs = attrs as unknown as Attrs;
  const {axis, epsilon, statisticsGradients} = typedAttrs;
  const view = channelView(x.shape, axis);
  const pShape = paramShape(view);
  const statisticsOf = (t: tf.Tensor) => compositeStatistics(t, view, typedAttrs, renormMean, renormStddev);
  // Recorded on the tape before y, or, without their gradients, computed inside y's
  // forward, where nothing is recorded and only y's backward saves x.
  const recorded = statisticsGradients === false ? null : statisticsOf(x);
  let unrecorded: CompositeStatistics | null = null;
  // y = γ·((x − μ)/σ·r + d) + β = shifted·scale + offset, two full-size passes, with the
  // hand-written backward; r and d enter as constants (closed over, not inputs).
  const normalize = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xIn, gammaIn, betaIn] = args as tf.Tensor[];
    const stats = recorded ?? statisticsOf(xIn);
    const {shifted, shiftedMean, mean, variance, std, r, d} = stats;
    save([xIn, gammaIn, mean, variance, r, d]);
    const value = tf.tidy(() => {
      const g = tf.reshape(gammaIn, pShape);
      const scale = tf.div(tf.mul(g, r), std);
      let offset = tf.sub(tf.mul(g, d), tf.mul(shiftedMean, scale));
      if (betaIn != null) offset = tf.add(offset, tf.reshape(betaIn, pShape));
      return tf.reshape(tf.add(tf.mul(shifted, scale), offset), x.shape);
    });
    if (recorded == null) {
      // The forward's scope disposes all but its value: keep the statistics out of it (released below).
      unrecorded = stats;
      tf.keep(mean);
      tf.keep(variance);
      tf.keep(r);
      tf.keep(d);
    }
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xSaved, gammaSaved, meanSaved, varianceSaved, rSaved, dSaved] = saved;
      const grads = compositeBatchNormTrainingGrad({dy, x: xSaved, mean: meanSaved, variance: varianceSaved,
        gamma: gammaSaved, r: rSaved, d: dSaved}, {axis, epsilon} as unknown as tf.NamedAttrMap);
      return betaIn == null ? grads.slice(0, 2) : grads;
    };
    return {value, gradFunc};
  });
  const y = beta == null ? normalize(x, gamma) : normalize(x, gamma, beta);
  // Full-size temporaries are disposed as soon as they are used.
  recorded?.shifted.dispose();
  const {mean, variance, r, d} = (recorded ?? unrecorded)!;
  // A reshape shares the data and belongs to this scope; the kept originals are then released.
  const outputs = [mean, variance, r, d].map((t) => tf.reshape(t, [view.channels]));
  if (recorded == null) tf.dispose([mean, variance, r, d]);
  return [y, ...outputs];
}

defineComposite(BATCH_NORM_TRAINING, compositeBatchNormTraining);
defineComposite(BATCH_RENORM_TRAINING, compositeBatchNormTraining);

function compositeBatchNormTrainingGrad(inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): tf.Tensor[] {
  const {dy, x, mean, variance, gamma, r, d} = inputs;
  const {axis, epsilon} = attrs as unknown as Attrs;
  const view = channelView(x.shape, axis);
  const count = view.outer * view.inner;
  const param = (t: tf.Tensor) => tf.reshape(t, paramShape(view));
  const invStd = tf.rsqrt(tf.add(param(variance), epsilon));
  const centered = tf.tidy(() => tf.sub(tf.reshape(x, viewShape(view)), param(mean)));
  const dyv = tf.reshape(dy, viewShape(view));
  const sumDy = channelSum(dyv, view);
  const sumDyCentered = tf.tidy(() => channelSum(tf.mul(dyv, centered), view));
  // dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) = dy·gain + centered·centeredScale + constant per channel.
  const gain = tf.mul(tf.mul(param(gamma), param(r)), invStd);
  const centeredScale = tf.neg(tf.div(tf.mul(tf.mul(gain, tf.square(invStd)), sumDyCentered), count));
  const constant = tf.neg(tf.div(tf.mul(gain, sumDy), count));
  // Full-size temporaries are disposed as soon as they are used: at most three are alive at once.
  const partial = tf.tidy(() => tf.add(tf.mul(centered, centeredScale), constant));
  centered.dispose();
  const dx = tf.tidy(() => tf.add(tf.mul(dyv, gain), partial));
  partial.dispose();
  const channels = [view.channels];
  const dGamma = tf.add(tf.mul(tf.mul(sumDyCentered, invStd), param(r)), tf.mul(sumDy, param(d)));
  return [tf.reshape(dx, x.shape), tf.reshape(dGamma, channels), tf.reshape(sumDy, channels)];
}

defineComposite(BATCH_NORM_TRAINING_GRAD, compositeBatchNormTrainingGrad);

/** The backward of y = x·scale + offset per channel, shared by the registered gradient and the composite. */
function channelScaleOffsetGrad(dy: tf.Tensor, x: tf.Tensor, scale: tf.Tensor, axis: number): tf.Tensor[] {
  const view = channelView(x.shape, axis);
  const dyv = tf.reshape(dy, viewShape(view));
  const perChannel = (t: tf.Tensor) => tf.reshape(channelSum(t, view), [view.channels]);
  return [
    tf.reshape(tf.mul(dyv, tf.reshape(scale, paramShape(view))), x.shape),
    perChannel(tf.mul(dyv, tf.reshape(x, viewShape(view)))),
    perChannel(dyv),
  ];
}

tf.registerGradient({
  kernelName: CHANNEL_SCALE_OFFSET,
  inputsToSave: ['x', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const [x, scale] = saved;
    const [dx, dScale, dOffset] = channelScaleOffsetGrad(dy as tf.Tensor, x, scale, (attrs as unknown as Attrs).axis);
    return {x: () => dx, scale: () => dScale, offset: () => dOffset};
  },
});

defineComposite(CHANNEL_SCALE_OFFSET, (inputs, attrs) => {
  const axis = (attrs as unknown as Attrs).axis;
  const view = channelView(inputs.x.shape, axis);
  const pShape = paramShape(view);
  const apply = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [x, scale, offset] = args as tf.Tensor[];
    save([x, scale]);
    const value = tf.tidy(() => tf.reshape(
        tf.add(tf.mul(tf.reshape(x, viewShape(view)), tf.reshape(scale, pShape)), tf.reshape(offset, pShape)), x.shape));
    return {value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => channelScaleOffsetGrad(dy, saved[0], saved[1], axis)};
  });
  return [apply(inputs.x, inputs.scale, inputs.offset)];
});
