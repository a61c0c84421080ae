/**
 * Ghost batch normalization (Hoffer, Hubara & Soudry, "Train longer, generalize
 * better", NeurIPS 2017) with tf.keras 2.x's exact semantics
 * (`BatchNormalization(virtual_batch_size=v)`). Line numbers refer to
 * tf_keras/layers/normalization/batch_normalization.py at tf-keras v2.17.0
 * (the same code as keras/layers/normalization/batch_normalization.py in TF 2.x).
 *
 * What Keras does, in training (`call`, lines 559-604, 613-700):
 *  - Ghost batches: x of shape [B, ...rest] is reshaped to [v, B/v, ...rest]
 *    (line 569) and the statistics reduce over axis 0 and the non-channel axes
 *    of `rest`, keeping axis 1 (line 619, `del reduction_axes[1]`). So there
 *    are B/v ghost batches of v samples each, and ghost batch j holds the
 *    samples i with i % (B/v) == j (a strided assignment, not consecutive
 *    blocks). B not a multiple of v fails in that reshape (line 590).
 *  - Each ghost batch j is normalized with its own mean μ_j and biased
 *    variance σ²_j per channel (tf.nn.moments, line 669), sharing γ and β:
 *      y = γ·(x − μ_j)/√(σ²_j + ε) + β.
 *  - The moving statistics follow the averages of the ghost statistics
 *    (lines 690-698): μ̄ = mean_j μ_j, σ̄² = mean_j σ²_j (not the variance of the
 *    whole batch), then moving = momentum·moving + (1 − momentum)·value.
 *  - With renorm (lines 718-733, `_renorm_correction_and_moments` 1052-1119),
 *    r and d are computed once per channel from the averaged μ̄ and σ̄², not per
 *    ghost batch: s = max(σ_R, √ε), r = clip(√(σ̄² + ε)/s, rmin, rmax),
 *    d = clip((μ̄ − μ_R)/s, −dmax, dmax), with μ_R, σ_R before their update;
 *    each ghost batch is still normalized with its own μ_j, σ²_j:
 *      y = γ·((x − μ_j)/√(σ²_j + ε)·r + d) + β,
 *    r and d constants for the gradient (stop_gradient, lines 731-732); then
 *    μ_R, σ_R ← EMA(μ̄, √(σ̄² + ε)) with renorm_momentum and moving_mean,
 *    moving_stddev ← EMA(μ̄, √(σ̄² + ε)) with momentum,
 *    moving_variance = relu(moving_stddev² − ε) (lines 748-775).
 * In inference (training false, or the layer not trainable) TF2 reshapes to
 * [-1, 1, ...rest] (line 569) and applies the moving statistics: the output
 * does not depend on v or on the batch size.
 *
 * How we compute it without a ghost loop: with ghost batch j and channel c
 * merged into one channel j·C + c, ghost batch normalization is ordinary
 * per-channel batch normalization of x viewed as [v, ..., (B/v)·C, ...], with
 * γ and β tiled B/v times, so the fused kernels and their gradients do the
 * work. The view is a free reshape when the channel axis is 1
 * ([B, C] → [v, (B/v)·C]; channels-first [B, C, H, W] → [v, (B/v)·C, H·W]);
 * a channel axis after other axes (channels-last [B, H, W, C]) needs the B/v
 * axis moved next to the channels, one transpose each way
 * ([v, B/v, H·W, C] → [v, H·W, B/v, C]). With renorm, r and d need the
 * averaged statistics first: one statistics pass (through tf.customGrad, so
 * r and d are constants for the gradient), then the training pass with γ·r
 * and γ·d + β tiled as its scale and offset.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchNormTraining, BatchNormTrainingResult, RenormArgs} from '../kernels/batch_norm';
import {NormalizationShapeError} from '../errors';

export interface GhostBatchNormArgs {
  /** The channel axis of x, resolved to a non-negative index >= 1. */
  axis: number;
  epsilon: number;
  /** Samples per ghost batch; must divide the batch size x.shape[0]. */
  virtualBatchSize: number;
  /** Batch Renormalization with Keras's ghost-batch semantics (r, d from the averaged statistics). */
  renorm?: RenormArgs;
}

/** How x maps to the merged-channel view [outer, (B/v)·C, inner] (inner dropped when 1). */
interface GhostLayout {
  ghostBatches: number;
  /** x reshaped to [v, B/v, ...before, C, ...after]. */
  expanded: number[];
  /** The permutation that moves the B/v axis next to the channel axis; null when it already is. */
  permutation: number[] | null;
  merged: number[];
}

function ghostLayout(shape: readonly number[], axis: number, virtualBatchSize: number): GhostLayout {
  const ghostBatches = shape[0] / virtualBatchSize;
  const before = shape.slice(1, axis);
  const after = shape.slice(axis + 1);
  const product = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
  const expanded = [virtualBatchSize, ghostBatches, ...before, shape[axis], ...after];
  const permutation = before.length === 0 ? null :
    [0, ...before.map((_, i) => i + 2), 1, ...Array.from({length: after.length + 1}, (_, i) => before.length + 2 + i)];
  const merged = [virtualBatchSize * product(before), ghostBatches * shape[axis]];
  if (after.length > 0) merged.push(product(after));
  return {ghostBatches, expanded, permutation, merged};
}

/**
 * Values per channel in one ghost batch of a training input of `shape`:
 * v times the size of the non-channel axes after the batch axis.
 * @throws NormalizationShapeError when v does not divide the batch size (Keras
 *   fails in its reshape), or when a ghost batch has a single value per channel
 *   (its variance is 0 and every output would be β).
 */
export function ghostValuesPerChannel(owner: string, shape: readonly number[], axis: number,
    virtualBatchSize: number): number {
  const batch = shape[0];
  if (batch % virtualBatchSize !== 0) {
    throw new NormalizationShapeError(owner, 'x', `${owner}: virtualBatchSize ${virtualBatchSize} must divide ` +
        `the training batch size; received a batch of ${batch} (input shape [${shape.join(', ')}]), as tf.keras ` +
        'also refuses. The last batch of an epoch is smaller when the number of samples is not a multiple of ' +
        'the batch size: choose sizes that are multiples of virtualBatchSize, or drop the last partial batch.');
  }
  const count = virtualBatchSize * shape.reduce((a, b) => a * b, 1) / (batch * shape[axis]);
  if (count < 2) {
    throw new NormalizationShapeError(owner, 'x', `${owner}: a ghost batch of virtualBatchSize ` +
        `${virtualBatchSize} holds ${count} value per channel for input shape [${shape.join(', ')}]; batch ` +
        'statistics need at least 2. Use a virtualBatchSize of 2 or more.');
  }
  return count;
}

/**
 * Training forward pass of ghost batch normalization (see the module comment):
 * `y` normalized per ghost batch; `mean` and `variance` the per-channel
 * averages over the ghost batches (what the moving statistics follow); `r` and
 * `d` the renorm corrections (ones and zeros without renorm). Only `y` carries
 * a gradient. `gamma`/`beta` may be null (scale/center off). The caller checks
 * the batch size with `ghostValuesPerChannel` first.
 */
export function ghostBatchNormTraining(x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: GhostBatchNormArgs): BatchNormTrainingResult {
  return tf.tidy(() => {
    const {axis, epsilon, renorm} = args;
    const layout = ghostLayout(x.shape, axis, args.virtualBatchSize);
    const channels = x.shape[axis];
    let view = tf.reshape(x, layout.expanded);
    if (layout.permutation != null) view = tf.transpose(view, layout.permutation);
    const permutedShape = view.shape;
    view = tf.reshape(view, layout.merged);
    const toInput = (merged: tf.Tensor) => {
      let out = tf.reshape(merged, permutedShape);
      if (layout.permutation != null) out = tf.transpose(out, inversePermutation(layout.permutation));
      return tf.reshape(out, x.shape);
    };
    const tiled = (p: tf.Tensor1D | null) => p == null ? null : tf.tile(p, [layout.ghostBatches]);
    const average = (perGhost: tf.Tensor1D): tf.Tensor1D =>
      tf.mean(tf.reshape(perGhost, [layout.ghostBatches, channels]), 0);
    if (renorm == null) {
      const batch = batchNormTraining(view, tiled(gamma), tiled(beta), {axis: 1, epsilon});
      const mean = average(batch.mean);
      return {y: toInput(batch.y), mean, variance: average(batch.variance), r: tf.onesLike(mean), d: tf.zerosLike(mean)};
    }
    // With renorm, r and d come from the statistics averaged over all ghost batches, so they are
    // known only after a statistics pass; tf.customGrad makes them constants for the gradient
    // (Keras's stop_gradient). Then one training pass takes γ·r and γ·d + β, tiled, as its scale
    // and offset: y = γ·r·x̂ + γ·d + β per ghost batch, with the fused kernel's gradient.
    const averaged = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const input = args[0] as tf.Tensor;
      const statistics = batchNormTraining(input, null, null, {axis: 1, epsilon});
      return {value: tf.stack([average(statistics.mean), average(statistics.variance)]),
        gradFunc: () => tf.zerosLike(input)};
    })(view);
    const [mean, variance] = tf.unstack(averaged) as [tf.Tensor1D, tf.Tensor1D];
    const s = tf.maximum(renorm.stddev, Math.sqrt(epsilon));
    // minimum/maximum, not clipByValue: see the composite kernel (wasm clip with limits rounding to ±0).
    const clip = (t: tf.Tensor, lo: number, hi: number): tf.Tensor1D => tf.minimum(tf.maximum(t, lo), hi);
    const r = clip(tf.div(tf.sqrt(tf.add(variance, epsilon)), s), renorm.rmin, renorm.rmax);
    const d = clip(tf.div(tf.sub(mean, renorm.mean), s), -renorm.dmax, renorm.dmax);
    const scale: tf.Tensor1D = gamma == null ? r : tf.mul(gamma, r);
    let offset: tf.Tensor1D = gamma == null ? d : tf.mul(gamma, d);
    if (beta != null) offset = tf.add(offset, beta);
    const batch = batchNormTraining(view, tiled(scale), tiled(offset), {axis: 1, epsilon, statisticsGradients: false});
    return {y: toInput(batch.y), mean, variance, r, d};
  });
}

function inversePermutation(permutation: number[]): number[] {
  const inverse = new Array<number>(permutation.length);
  permutation.forEach((p, i) => { inverse[p] = i; });
  return inverse;
}
