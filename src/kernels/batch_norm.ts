/**
 * Per-channel batch normalization as tfjs kernels with a hand-written gradient.
 *
 * Forward (Ioffe & Szegedy 2015; Batch Renormalization, Ioffe 2017, adds r, d):
 *   μ = mean(x), σ² = mean((x − μ)²) (biased), x̂ = (x − μ)/√(σ² + ε)
 *   y = γ·(x̂·r + d) + β
 * Plain BN has r = 1, d = 0. With renorm statistics (μ_R, σ_R) given:
 *   s = max(σ_R, √ε), r = clip(√(σ² + ε)/s, rmin, rmax), d = clip((μ − μ_R)/s, −dmax, dmax)
 * Backward, with r and d constants and g = γ·r:
 *   dx = (1/√(σ²+ε))·(dy·g − mean(dy·g) − x̂·mean(dy·g·x̂))
 *   dγ = Σ dy·(x̂·r + d),  dβ = Σ dy
 * The statistics outputs (μ, σ², r, d) feed moving averages and carry no gradient.
 *
 * Inference folds scale = γ/√(σ²+ε) and offset = β − μ·scale per channel once
 * and applies y = x·scale + offset in one pass.
 */
import * as tf from '@tensorflow/tfjs-core';
import {defineComposite, runKernel} from './registry';
import {sumPerSampleChannel} from './reduce';
import {ChannelView, channelView, paramShape, viewShape} from './view';

export const BATCH_NORM_TRAINING = 'TfjsNormalizationBatchNormTraining';
export const BATCH_NORM_TRAINING_GRAD = 'TfjsNormalizationBatchNormTrainingGrad';
export const CHANNEL_SCALE_OFFSET = 'TfjsNormalizationChannelScaleOffset';

/** Renorm statistics and clipping for Batch Renormalization; absent limits are Infinity. */
export interface RenormArgs {
  mean: tf.Tensor1D;
  stddev: tf.Tensor1D;
  rmin: number;
  rmax: number;
  dmax: number;
}

export interface BatchNormTrainingArgs {
  /** The channel axis, resolved to a non-negative index. */
  axis: number;
  epsilon: number;
  /** Batch Renormalization: correct the batch statistics toward these. */
  renorm?: RenormArgs;
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
 * Normalizes `x` with its own per-channel statistics; `gamma`/`beta` may be
 * null (scale/center off). Only `y` carries a gradient.
 */
export function batchNormTraining(
    x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: BatchNormTrainingArgs): BatchNormTrainingResult {
  const renorm = args.renorm;
  // The gradient saves gamma, so the kernel always gets one (ones when scale is off).
  const scale = gamma ?? tf.ones([x.shape[args.axis]]);
  const [y, mean, variance, r, d] = runKernel(BATCH_NORM_TRAINING,
      {x, gamma: scale, beta, renormMean: renorm?.mean, renormStddev: renorm?.stddev}, {
        axis: args.axis, epsilon: args.epsilon, rmin: renorm?.rmin ?? 0,
        rmax: renorm?.rmax ?? Infinity, dmax: renorm?.dmax ?? Infinity,
      });
  if (gamma == null) scale.dispose();
  return {y, mean, variance, r, d} as BatchNormTrainingResult;
}

/** y = x·scale + offset along `axis`, scale and offset of shape [channels]. */
export function channelScaleOffset(x: tf.Tensor, scale: tf.Tensor1D, offset: tf.Tensor1D, axis: number): tf.Tensor {
  return runKernel(CHANNEL_SCALE_OFFSET, {x, scale, offset}, {axis})[0];
}

/** Inference with given statistics: fold once, then one multiply-add pass over x. */
export function batchNormInference(
    x: tf.Tensor, mean: tf.Tensor1D, variance: tf.Tensor1D,
    gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, axis: number, epsilon: number): tf.Tensor {
  return tf.tidy(() => {
    const {scale, offset} = foldScaleOffset(mean, variance, gamma, beta, epsilon);
    return channelScaleOffset(x, scale, offset, axis);
  });
}

/** Per-channel scale γ/√(σ²+ε) and offset β − μ·scale, so that y = x·scale + offset. */
export function foldScaleOffset(
    mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D | null,
    beta: tf.Tensor1D | null, epsilon: number): {scale: tf.Tensor1D; offset: tf.Tensor1D} {
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
}

tf.registerGradient({
  kernelName: BATCH_NORM_TRAINING,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true, true, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [x, gamma, mean, variance, r, d] = saved;
    const {axis, epsilon} = attrs as unknown as Attrs;
    const [dx, dGamma, dBeta] = runKernel(BATCH_NORM_TRAINING_GRAD,
        {dy: (dys as tf.Tensor[])[0], x, mean, variance, gamma, r, d}, {axis, epsilon});
    // Renorm statistics are moving averages, never trained: zero gradients.
    const zeros = () => tf.zeros([x.shape[axis]]);
    return {x: () => dx, gamma: () => dGamma, beta: () => dBeta, renormMean: zeros, renormStddev: zeros};
  },
});

/** Σ over every axis but the channel axis, shaped to broadcast against `viewShape(view)`. */
function channelSum(t: tf.Tensor, view: ChannelView): tf.Tensor {
  return tf.tidy(() => tf.reshape(sumPerSampleChannel(t, 1, view.outer, view.channels, view.inner), paramShape(view)));
}

// The composites evaluate the same formulas as the fused kernels in float32
// tfjs ops, with every full-size reduction a matMul (./reduce.ts). The mean is
// taken in two steps (a first estimate, then the mean of x minus it) so that
// float32 sums stay accurate when the mean dwarfs the spread.
defineComposite(BATCH_NORM_TRAINING, (inputs, attrs) => {
  const {x, gamma, beta, renormMean, renormStddev} = inputs;
  const {axis, epsilon, rmin, rmax, dmax} = attrs as unknown as Attrs;
  const view = channelView(x.shape, axis);
  const pShape = paramShape(view);
  const c = view.channels;
  const n = view.outer * view.inner;
  const xv = tf.reshape(x, viewShape(view));
  const roughMean = tf.div(channelSum(xv, view), n);
  const shifted = tf.sub(xv, roughMean);
  const meanShift = tf.div(channelSum(shifted, view), n);
  const mean = tf.add(roughMean, meanShift);
  const variance = tf.tidy(() => tf.div(channelSum(tf.squaredDifference(shifted, meanShift), view), n));
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
  // y = γ·((x − μ)/σ·r + d) + β = shifted·scale + offset, two full-size passes. Full-size
  // temporaries are disposed as soon as they are used: at most three are alive at once.
  const g = tf.reshape(gamma, pShape);
  const scale = tf.div(tf.mul(g, r), std);
  let offset = tf.sub(tf.mul(g, d), tf.mul(meanShift, scale));
  if (beta != null) offset = tf.add(offset, tf.reshape(beta, pShape));
  const y = tf.tidy(() => tf.add(tf.mul(shifted, scale), offset));
  shifted.dispose();
  const perChannel = (t: tf.Tensor) => tf.reshape(t, [c]);
  return [tf.reshape(y, x.shape), perChannel(mean), perChannel(variance), perChannel(r), perChannel(d)];
});

defineComposite(BATCH_NORM_TRAINING_GRAD, (inputs, attrs) => {
  const {dy, x, mean, variance, gamma, r, d} = inputs;
  const {axis, epsilon} = attrs as unknown as Attrs;
  const view = channelView(x.shape, axis);
  const n = view.outer * view.inner;
  const param = (t: tf.Tensor) => tf.reshape(t, paramShape(view));
  const invStd = tf.rsqrt(tf.add(param(variance), epsilon));
  const centered = tf.tidy(() => tf.sub(tf.reshape(x, viewShape(view)), param(mean)));
  const dyv = tf.reshape(dy, viewShape(view));
  const sumDy = channelSum(dyv, view);
  const sumDyXc = tf.tidy(() => channelSum(tf.mul(dyv, centered), view));
  // dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) = dy·gain + centered·q + k per channel.
  const gain = tf.mul(tf.mul(param(gamma), param(r)), invStd);
  const q = tf.neg(tf.div(tf.mul(tf.mul(gain, tf.square(invStd)), sumDyXc), n));
  const k = tf.neg(tf.div(tf.mul(gain, sumDy), n));
  // Full-size temporaries are disposed as soon as they are used: at most three are alive at once.
  const partial = tf.tidy(() => tf.add(tf.mul(centered, q), k));
  centered.dispose();
  const dx = tf.tidy(() => tf.add(tf.mul(dyv, gain), partial));
  partial.dispose();
  const channels = [view.channels];
  const dGamma = tf.add(tf.mul(tf.mul(sumDyXc, invStd), param(r)), tf.mul(sumDy, param(d)));
  return [tf.reshape(dx, x.shape), tf.reshape(dGamma, channels), tf.reshape(sumDy, channels)];
});

tf.registerGradient({
  kernelName: CHANNEL_SCALE_OFFSET,
  inputsToSave: ['x', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const [x, scale] = saved;
    const view = channelView(x.shape, (attrs as unknown as Attrs).axis);
    const dyv = tf.reshape(dy as tf.Tensor, viewShape(view));
    const perChannel = (t: tf.Tensor) => tf.reshape(channelSum(t, view), [view.channels]);
    return {
      x: () => tf.reshape(tf.mul(dyv, tf.reshape(scale, paramShape(view))), x.shape),
      scale: () => perChannel(tf.mul(dyv, tf.reshape(x, viewShape(view)))),
      offset: () => perChannel(dyv),
    };
  },
});

defineComposite(CHANNEL_SCALE_OFFSET, (inputs, attrs) => {
  const {x, scale, offset} = inputs;
  const view = channelView(x.shape, (attrs as unknown as Attrs).axis);
  const pShape = paramShape(view);
  const y = tf.add(tf.mul(tf.reshape(x, viewShape(view)), tf.reshape(scale, pShape)), tf.reshape(offset, pShape));
  return tf.reshape(y, x.shape);
});
