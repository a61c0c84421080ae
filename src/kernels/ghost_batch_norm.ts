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
 * How it runs: on cpu, a fused kernel (./cpu/batch_norm_training.ts) walks
 * x in place with statistics indexed by (sample mod B/v, channel)
 * (./cpu/layout.ts), and its backward (./cpu/gradient.ts) likewise: no
 * reshaped or transposed copy. Elsewhere the composite merges ghost batch j
 * and channel c into one channel j·C + c, so that ghost batch normalization
 * is ordinary per-channel batch normalization of x viewed as
 * [v, ..., (B/v)·C, ...] with γ and β tiled B/v times. That view is a free
 * reshape when the channel axis is 1 ([B, C] → [v, (B/v)·C]; channels-first
 * [B, C, H, W] → [v, (B/v)·C, H·W]); a channel axis after other axes
 * (channels-last [B, H, W, C]) needs the B/v axis moved next to the channels,
 * one transpose each way ([v, B/v, H·W, C] → [v, H·W, B/v, C]). With renorm,
 * r and d need the averaged statistics first: one statistics pass (through
 * tf.customGrad, so r and d are constants for the gradient), then the
 * training pass with γ·r and γ·d + β tiled as its scale and offset.
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationShapeError} from '../errors';
import {
  BATCH_NORM_TRAINING_GRAD, batchNormTraining, BatchNormTrainingResult, RenormArgs, withoutGradient,
} from './batch_norm';
import {checkChannelInput, checkChannelVector} from './checks';
import {defineComposite, runKernel} from './registry';

export const GHOST_BATCH_NORM_TRAINING = 'TfjsNormalizationGhostBatchNormTraining';

export interface GhostBatchNormArgs {
  /** The channel axis; negative counts from the end; not the batch axis 0. */
  axis: number;
  epsilon: number;
  /** Samples per ghost batch: a positive integer that divides the batch size x.shape[0]. */
  virtualBatchSize: number;
  /** Batch Renormalization with Keras's ghost-batch semantics (r, d from the averaged statistics). */
  renorm?: RenormArgs;
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
 * Training forward pass of ghost batch normalization (see the file comment):
 * `y` normalized per ghost batch; `mean` and `variance` ([channels]) the
 * averages over the ghost batches of their statistics (what the moving
 * statistics follow); `r` and `d` the renorm corrections (ones and zeros
 * without renorm). Only `y` carries a gradient: one taken through a statistic
 * throws. `gamma`/`beta` of shape [channels] may be null (scale/center off).
 * @throws NormalizationShapeError as batchNormTraining, and as
 *   ghostValuesPerChannel for the batch size.
 */
export function ghostBatchNormTraining(x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: GhostBatchNormArgs): BatchNormTrainingResult {
  const op = 'ghostBatchNormTraining';
  const axis = checkChannelInput(op, x, args.axis);
  const {renorm, virtualBatchSize} = args;
  if (!(Number.isInteger(virtualBatchSize) && virtualBatchSize >= 1)) {
    throw new NormalizationShapeError(op, 'virtualBatchSize',
        `${op}: virtualBatchSize must be a positive integer; received ${String(virtualBatchSize)}.`);
  }
  checkChannelVector(op, 'gamma', gamma, x, axis, true);
  checkChannelVector(op, 'beta', beta, x, axis, true);
  if (renorm != null) {
    checkChannelVector(op, 'renorm.mean', renorm.mean, x, axis);
    checkChannelVector(op, 'renorm.stddev', renorm.stddev, x, axis);
  }
  ghostValuesPerChannel(op, x.shape, axis, virtualBatchSize);
  // The gradient saves gamma, so the kernel always gets one (ones when scale is off).
  const scale = gamma ?? tf.ones([x.shape[axis]]);
  const outputs = runKernel(GHOST_BATCH_NORM_TRAINING,
      {x, gamma: scale, beta, renormMean: renorm?.mean, renormStddev: renorm?.stddev}, {
        axis, epsilon: args.epsilon, virtualBatchSize, rmin: renorm?.rmin ?? 0, rmax: renorm?.rmax ?? Infinity,
        dmax: renorm?.dmax ?? Infinity,
      });
  if (gamma == null) scale.dispose();
  const [y, ...statistics] = outputs.slice(0, 5);
  const [mean, variance, r, d] = statistics.map((t) => withoutGradient(op, x, t));
  // The per-ghost-batch statistics (outputs 5, 6) are the backward's; the tape keeps its own copy.
  tf.dispose([...statistics, ...outputs.slice(5)]);
  return {y, mean, variance, r, d} as BatchNormTrainingResult;
}

interface Attrs {
  axis: number;
  epsilon: number;
  virtualBatchSize: number;
  rmin: number;
  rmax: number;
  dmax: number;
}

// The fused kernel's backward: y's gradient with the statistics of each ghost batch (r and d constant).
tf.registerGradient({
  kernelName: GHOST_BATCH_NORM_TRAINING,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, false, false, true, true, true, true],
  gradFunc: (dys, saved, attrs) => {
    const dy = (dys as Array<tf.Tensor | null>)[0];
    const [x, gamma, r, d, ghostMean, ghostVariance] = saved;
    const {axis, epsilon, virtualBatchSize} = attrs as unknown as Attrs;
    const [dx, dGamma, dBeta] = runKernel(BATCH_NORM_TRAINING_GRAD, {dy: dy ?? tf.zerosLike(x), x,
      mean: ghostMean, variance: ghostVariance, gamma, r, d}, {axis, epsilon, virtualBatchSize});
    // r and d are constants in y (Keras's stop_gradient): μ_R and σ_R get no gradient.
    return {x: () => dx, gamma: () => dGamma, beta: () => dBeta,
      renormMean: () => tf.zerosLike(r), renormStddev: () => tf.zerosLike(r)};
  },
});

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

// The composite: ordinary batch normalization over merged (ghost batch, channel) channels.
defineComposite(GHOST_BATCH_NORM_TRAINING, (inputs, attrs) => {
  const {x, gamma, beta, renormMean, renormStddev} = inputs;
  const {axis, epsilon, virtualBatchSize, rmin, rmax, dmax} = attrs as unknown as Attrs;
  const layout = ghostLayout(x.shape, axis, virtualBatchSize);
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
  const tiled = (p: tf.Tensor | undefined) => p == null ? null : tf.tile(p, [layout.ghostBatches]) as tf.Tensor1D;
  const average = (perGhost: tf.Tensor): tf.Tensor1D =>
    tf.mean(tf.reshape(perGhost, [layout.ghostBatches, channels]), 0);
  if (renormMean == null || renormStddev == null) {
    const batch = batchNormTraining(view, tiled(gamma), tiled(beta), {axis: 1, epsilon, statisticsGradients: false});
    const mean = average(batch.mean);
    return [toInput(batch.y), mean, average(batch.variance), tf.onesLike(mean), tf.zerosLike(mean),
      batch.mean, batch.variance];
  }
  // With renorm, r and d come from the statistics averaged over all ghost batches, so they are
  // known only after a statistics pass; tf.customGrad makes them constants for the gradient
  // (Keras's stop_gradient). Then one training pass takes γ·r and γ·d + β, tiled, as its scale
  // and offset: y = γ·r·x̂ + γ·d + β per ghost batch, with the composite's gradient.
  const statistics = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const input = args[0] as tf.Tensor;
    const batch = batchNormTraining(input, null, null, {axis: 1, epsilon, statisticsGradients: false});
    return {value: tf.stack([batch.mean, batch.variance]), gradFunc: () => tf.zerosLike(input)};
  })(view);
  const [ghostMean, ghostVariance] = tf.unstack(statistics) as [tf.Tensor1D, tf.Tensor1D];
  const [mean, variance] = [average(ghostMean), average(ghostVariance)];
  const s = tf.maximum(renormStddev, Math.sqrt(epsilon));
  // minimum/maximum, not clipByValue: see the batch norm composite (wasm clip with limits rounding to ±0).
  const clip = (t: tf.Tensor, lo: number, hi: number): tf.Tensor1D => tf.minimum(tf.maximum(t, lo), hi);
  const r = clip(tf.div(tf.sqrt(tf.add(variance, epsilon)), s), rmin, rmax);
  const d = clip(tf.div(tf.sub(mean, renormMean), s), -dmax, dmax);
  let offset: tf.Tensor = tf.mul(gamma, d);
  if (beta != null) offset = tf.add(offset, beta);
  const batch = batchNormTraining(view, tiled(tf.mul(gamma, r)), tiled(offset),
      {axis: 1, epsilon, statisticsGradients: false});
  return [toInput(batch.y), mean, variance, r, d, ghostMean, ghostVariance];
});

function inversePermutation(permutation: number[]): number[] {
  const inverse = new Array<number>(permutation.length);
  permutation.forEach((p, i) => { inverse[p] = i; });
  return inverse;
}
