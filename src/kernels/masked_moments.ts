/**
 * Batch normalization in training with a mask: the batch statistics come from
 * the unmasked positions only, as in Keras 3's `BatchNormalization._moments`
 * (keras/src/layers/normalization/batch_normalization.py). With w = 1 at an
 * unmasked position and 0 at a masked one, m = Σ w and ε₀ = 1e-7 (Keras's
 * `backend.epsilon()`, added to the count as Keras does):
 *   μ = Σ w·x / (m + ε₀),  σ² = Σ w·(x − μ)² / (m + ε₀)
 *   y = γ·((x − μ)/√(σ² + ε)·r + d) + β   at every position, masked ones included
 * (Keras normalizes the whole tensor; the mask only selects what the statistics
 * see). r = 1, d = 0 for plain BN; Batch Renormalization's r and d are those of
 * ./batch_norm.ts, computed from these μ and σ² and constant for the gradient.
 *
 * Shapes: the mask has the input's shape without the channel axis ([N, T] for
 * [N, T, C], Keras's case; [N, H, W] for channels-first [N, C, H, W]) and dtype
 * bool, as `Masking` and `Embedding({maskZero: true})` produce it.
 *
 * Implementation: a composition of tfjs ops, so the gradient is autodiff of
 * exactly the forward formula (including ε₀). The weighted sums are matMuls
 * with the mask (one read of x each); the final pass is CHANNEL_SCALE_OFFSET,
 * the fused kernel on cpu. The mean is taken in two steps (a first estimate,
 * then the weighted mean of x minus it), as the composite BATCH_NORM_TRAINING
 * does, so float32 sums stay accurate when the mean dwarfs the spread.
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationShapeError} from '../errors';
import {
  batchNormTraining, BatchNormTrainingArgs, BatchNormTrainingResult, channelScaleOffset,
} from './batch_norm';
import {channelView, ChannelView} from './view';

/** Keras's `backend.epsilon()`, which Keras 3 adds to the unmasked count in masked moments. */
export const MASKED_COUNT_EPSILON = 1e-7;

/**
 * Checks a mask against the input: dtype bool and the input's shape without
 * the channel axis `axis` (Keras requires rank = input rank − 1 and broadcasts
 * the mask along the last axis, the channel axis there). `owner` names the
 * layer or op in the error.
 * @throws NormalizationShapeError naming the owner, the mask shape and the input shape.
 */
export function checkMask(owner: string, mask: tf.Tensor, inputShape: readonly number[], axis: number): void {
  const expected = inputShape.filter((_, i) => i !== axis);
  if (!tf.util.arraysEqual(mask.shape, expected)) {
    throw new NormalizationShapeError(owner, 'mask',
        `${owner}: the mask must have the input's shape without the channel axis ${axis}, ` +
        `[${expected.join(', ')}] for input shape [${inputShape.join(', ')}]; received mask shape ` +
        `[${mask.shape.join(', ')}].`);
  }
  if (mask.dtype !== 'bool') {
    throw new NormalizationShapeError(owner, 'mask',
        `${owner}: the mask must have dtype bool (true = use the position for the batch statistics), ` +
        `as Masking and Embedding produce it; received dtype ${mask.dtype}. Convert it with tf.cast(mask, 'bool').`);
  }
}

/** Unmasked positions in `mask`, the values per channel that masked moments use. One scalar read. */
export function unmaskedCount(mask: tf.Tensor): number {
  const count = tf.tidy(() => tf.sum(tf.cast(mask, 'int32')));
  const value = count.dataSync()[0];
  count.dispose();
  return value;
}

/**
 * Training-mode batch normalization with the batch statistics over unmasked
 * positions (`mask` true); without a mask, `batchNormTraining`. `gamma`/`beta`
 * may be null (scale/center off). Returns y (with a gradient for x, gamma and
 * beta) and the per-channel mean, biased variance, r and d that feed the
 * moving averages. The caller checks the mask (`checkMask`) and that it leaves
 * at least two values (`unmaskedCount`); all masked gives μ = σ² = 0 as in Keras.
 */
export function maskedBatchNormTraining(
    x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, args: BatchNormTrainingArgs,
    mask: tf.Tensor | null): BatchNormTrainingResult {
  if (mask == null) return batchNormTraining(x, gamma, beta, args);
  return tf.tidy(() => {
    const view = channelView(x.shape, args.axis);
    const weights = tf.cast(mask, 'float32');
    const denominator = tf.add(tf.sum(weights), MASKED_COUNT_EPSILON);
    const weightedMean = (t: tf.Tensor) => tf.div(weightedChannelSum(t, weights, view), denominator) as tf.Tensor1D;
    const xv = tf.reshape(x, viewShape3(view));
    // μ = μ₁ + δ with μ₁ a first estimate: δ = Σ w·(x − μ₁)/(m + ε₀) − μ₁·ε₀/(m + ε₀), exactly Keras's μ.
    const roughMean = weightedMean(xv);
    const shifted = tf.sub(xv, paramView(roughMean));
    const meanShift: tf.Tensor1D = tf.sub(weightedMean(shifted), tf.div(tf.mul(roughMean, MASKED_COUNT_EPSILON), denominator));
    const mean: tf.Tensor1D = tf.add(roughMean, meanShift);
    // square(sub), not squaredDifference: tfjs 4.22's squaredDifference gradient does not reduce a broadcast input.
    const variance = weightedMean(tf.square(tf.sub(shifted, paramView(meanShift))));
    const std: tf.Tensor1D = tf.sqrt(tf.add(variance, args.epsilon));
    let r: tf.Tensor1D = tf.onesLike(std);
    let d: tf.Tensor1D = tf.zerosLike(std);
    if (args.renorm != null) {
      const {mean: renormMean, stddev: renormStddev, rmin, rmax, dmax} = args.renorm;
      const s = tf.maximum(renormStddev, Math.sqrt(args.epsilon));
      // Ioffe 2017: r and d are constants for the gradient. minimum/maximum, not clipByValue (see ./batch_norm.ts).
      r = stopGradient(tf.minimum(tf.maximum(tf.div(std, s), rmin), rmax));
      d = stopGradient(tf.minimum(tf.maximum(tf.div(tf.sub(mean, renormMean), s), -dmax), dmax));
    }
    // y = γ·((x − μ)/σ·r + d) + β = shifted·scale + offset with x − μ = shifted − δ.
    let scale: tf.Tensor1D = tf.div(r, std);
    let offset: tf.Tensor1D = d;
    if (gamma != null) {
      scale = tf.mul(scale, gamma);
      offset = tf.mul(offset, gamma);
    }
    offset = tf.sub(offset, tf.mul(meanShift, scale));
    if (beta != null) offset = tf.add(offset, beta);
    const y = tf.reshape(channelScaleOffset(shifted, scale, offset, 1), x.shape);
    return {y, mean, variance, r, d};
  });
}

/** [outer, channels, inner]: the view with the channel axis at 1, whatever the input's layout. */
function viewShape3(view: ChannelView): number[] {
  return [view.outer, view.channels, view.inner];
}

/** A per-channel vector shaped to broadcast against `viewShape3`. */
function paramView(t: tf.Tensor1D): tf.Tensor {
  return tf.reshape(t, [1, t.size, 1]);
}

/**
 * Σ over positions of w·t per channel, `t` in the [outer, channels, inner]
 * view and `weights` of the mask's shape ([outer, inner] once flattened):
 * shape [channels]. One matMul reads t once, the large operand first (see ./reduce.ts).
 */
function weightedChannelSum(t: tf.Tensor, weights: tf.Tensor, view: ChannelView): tf.Tensor1D {
  const {outer, channels, inner} = view;
  if (inner === 1) {
    const sums = tf.matMul(tf.reshape(t, [outer, channels]), tf.reshape(weights, [outer, 1]), true);
    return tf.reshape(sums, [channels]);
  }
  const sums = tf.matMul(tf.reshape(t, [outer, channels, inner]), tf.reshape(weights, [outer, inner, 1]));
  return tf.reshape(tf.sum(sums, 0), [channels]);
}

/** Identity whose gradient is zero: tfjs has no public stop-gradient op. */
const zeroGradientIdentity = tf.customGrad((t) => ({
  value: tf.clone(t as tf.Tensor), gradFunc: (dy) => tf.zerosLike(dy as tf.Tensor),
}));

function stopGradient(t: tf.Tensor1D): tf.Tensor1D {
  return zeroGradientIdentity(t) as tf.Tensor1D;
}
