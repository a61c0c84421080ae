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
 * How it runs, without a reshaped or transposed copy of x: on cpu, a fused
 * kernel (./cpu/batch_norm_training.ts) walks x in place with statistics
 * indexed by (sample mod B/v, channel) (./cpu/layout.ts), and its backward
 * (./cpu/gradient.ts) likewise. Elsewhere the composite views x as
 * [v, B/v, A, C, Bʹ] (a free reshape; A the axes between batch and channel,
 * Bʹ those after) and takes each statistic as a mean per (sample, channel)
 * over A and Bʹ, then over the v samples of each ghost batch; y and its
 * hand-written backward broadcast the per-(ghost batch, channel) factors.
 * r and d come from the averaged statistics inside y's forward, so they are
 * constants for the gradient (Keras's stop_gradient).
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationConfigError, NormalizationShapeError} from '../errors';
import {
  BATCH_NORM_TRAINING_GRAD, BatchNormTrainingResult, checkBatchNormInputs, RenormArgs, renormKernelArgs, runWithGamma,
  withoutGradients,
} from './batch_norm';
import {checkOptions, describeValue} from './checks';
import {meanPerSampleChannel} from './reduce';
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
 * @throws NormalizationConfigError for a missing `args`, an epsilon that is not
 *   a finite number > 0, or a virtualBatchSize that is not an integer >= 1.
 * @throws NormalizationShapeError as batchNormTraining, and as
 *   ghostValuesPerChannel for the batch size.
 */
export function ghostBatchNormTraining(x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: GhostBatchNormArgs): BatchNormTrainingResult {
  const op = 'ghostBatchNormTraining';
  checkOptions(op, args, 'axis, epsilon, virtualBatchSize, renorm?');
  const {renorm, virtualBatchSize} = args;
  if (!(Number.isInteger(virtualBatchSize) && virtualBatchSize >= 1)) {
    throw new NormalizationConfigError(op, 'virtualBatchSize', virtualBatchSize,
        `${op}: virtualBatchSize must be an integer >= 1; received ${describeValue(virtualBatchSize)}.`);
  }
  const axis = checkBatchNormInputs(op, x, gamma, beta, args.axis, renorm);
  ghostValuesPerChannel(op, x.shape, axis, virtualBatchSize);
  const renormArgs = renormKernelArgs(renorm);
  const [y, mean, variance, r, d, ...ghostStatistics] = runWithGamma(GHOST_BATCH_NORM_TRAINING, x, gamma, axis,
      {beta, ...renormArgs.inputs}, {axis, epsilon: args.epsilon, virtualBatchSize, ...renormArgs.attrs});
  // The per-ghost-batch statistics are the backward's; the tape keeps its own copy.
  tf.dispose(ghostStatistics);
  return {y, ...withoutGradients(op, x, {mean, variance, r, d} as Omit<BatchNormTrainingResult, 'y'>,
      'which carries no gradient: in ghost batch normalization only y is differentiated (as in tf.keras).',
      'virtualBatchSize', virtualBatchSize)};
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

// The composite (see the file comment): tfjs ops on the free view [v, B/v, A, C, Bʹ], with every
// statistic a mean per (sample, channel) over A and Bʹ, then over the v samples of each ghost
// batch (./reduce.ts: pooling, or a product with ones channels-first).
defineComposite(GHOST_BATCH_NORM_TRAINING, (inputs, attrs) => {
  const {x, gamma, beta, renormMean, renormStddev} = inputs;
  const {axis, epsilon, virtualBatchSize, rmin, rmax, dmax} = attrs as unknown as Attrs;
  const ghosts = ghostView(x.shape, axis, virtualBatchSize);
  const {perChannel} = ghosts;
  // minimum/maximum, not clipByValue: see the batch norm composite (wasm clip with limits rounding to ±0).
  const clip = (t: tf.Tensor, lo: number, hi: number) => tf.minimum(tf.maximum(t, lo), hi);
  // The outputs, kept out of the forward's scope: averaged mean and variance, r, d, then per ghost batch.
  let kept: tf.Tensor[] = [];
  // y = γ·((x − μ_j)/σ_j·r + d) + β = shifted·scale + offset per (ghost batch j, channel), r and d
  // constants (closed over, not inputs); nothing in the forward is recorded.
  const normalize = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xIn, gammaIn, betaIn] = args as tf.Tensor[];
    const xv = tf.reshape(xIn, ghosts.view);
    // The mean in two steps (a shift, the first estimate, then the mean of x − shift) keeps
    // float32 sums accurate when the mean dwarfs the spread; var = mean(shifted²) − shiftedMean².
    const shift = ghosts.mean(xv);
    const shifted = tf.sub(xv, shift);
    const shiftedMean = ghosts.mean(shifted);
    const meanSquare = tf.tidy(() => ghosts.mean(tf.square(shifted)));
    const variance = tf.relu(tf.sub(meanSquare, tf.square(shiftedMean)));
    const mean = tf.add(shift, shiftedMean);
    const average = (t: tf.Tensor) => tf.mean(tf.reshape(t, [ghosts.ghostBatches, ghosts.channels]), 0);
    const [meanAverage, varianceAverage] = [average(mean), average(variance)];
    let r: tf.Tensor = tf.onesLike(meanAverage);
    let d: tf.Tensor = tf.zerosLike(meanAverage);
    if (renormMean != null && renormStddev != null) {
      const s = tf.maximum(renormStddev, Math.sqrt(epsilon));
      r = clip(tf.div(tf.sqrt(tf.add(varianceAverage, epsilon)), s), rmin, rmax);
      d = clip(tf.div(tf.sub(meanAverage, renormMean), s), -dmax, dmax);
    }
    const invStd = tf.rsqrt(tf.add(variance, epsilon));
    const gain = tf.mul(perChannel(tf.mul(gammaIn, r)), invStd);
    let offset = tf.sub(perChannel(tf.mul(gammaIn, d)), tf.mul(shiftedMean, gain));
    if (betaIn != null) offset = tf.add(offset, perChannel(betaIn));
    const value = tf.tidy(() => tf.reshape(tf.add(tf.mul(shifted, gain), offset), xIn.shape));
    // Full-size temporaries are disposed as soon as they are used.
    shifted.dispose();
    save([xIn, gammaIn, mean, invStd, r, d]);
    // The forward's scope disposes all but its value: keep the statistics out of it (released below).
    kept = [meanAverage, varianceAverage, r, d, tf.reshape(mean, [-1]), tf.reshape(variance, [-1])].map(tf.keep);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xSaved, gammaSaved, meanSaved, invStdSaved, rSaved, dSaved] = saved;
      const dyv = tf.reshape(dy, ghosts.view);
      const centered = tf.sub(tf.reshape(xSaved, ghosts.view), meanSaved);
      const meanDy = ghosts.mean(dyv);
      const meanDyCentered = tf.tidy(() => ghosts.mean(tf.mul(dyv, centered)));
      // dx = γr/σ·(dy − mean(dy) − x̂·mean(dy·x̂)) = dy·gain + centered·centeredScale + constant per (j, c).
      const gainSaved = tf.mul(perChannel(tf.mul(gammaSaved, rSaved)), invStdSaved);
      const centeredScale = tf.neg(tf.mul(tf.mul(gainSaved, tf.square(invStdSaved)), meanDyCentered));
      const constant = tf.neg(tf.mul(gainSaved, meanDy));
      const partial = tf.tidy(() => tf.add(tf.mul(centered, centeredScale), constant));
      centered.dispose();
      const dx = tf.tidy(() => tf.reshape(tf.add(tf.mul(dyv, gainSaved), partial), dy.shape));
      partial.dispose();
      // dγ = Σ dy·(x̂·r + d), dβ = Σ dy: per-(j, c) means times their count, summed over j.
      const overGhosts = (t: tf.Tensor) => tf.mul(tf.sum(tf.reshape(t, [ghosts.ghostBatches, ghosts.channels]), 0),
          ghosts.valuesPerStatistic);
      const sumDy = overGhosts(meanDy);
      const dGamma = tf.add(tf.mul(overGhosts(tf.mul(meanDyCentered, invStdSaved)), rSaved), tf.mul(sumDy, dSaved));
      return betaIn == null ? [dx, dGamma] : [dx, dGamma, sumDy];
    };
    return {value, gradFunc};
  });
  const y = beta == null ? normalize(x, gamma) : normalize(x, gamma, beta);
  // Clones share the data and belong to this scope; the kept originals are then released.
  const outputs = kept.map((t) => tf.clone(t));
  tf.dispose(kept);
  return [y, ...outputs];
});

/**
 * x viewed for the composite as [v, B/v, A, C, Bʹ] (trailing 1s dropped):
 * `mean(t)` is the per-(ghost batch, channel) mean of a view-shaped t, shaped
 * [1, B/v, 1, C, 1] to broadcast against it; `perChannel` shapes a [C]
 * tensor to broadcast. With the channel axis next to the batch axis the same
 * code sees A = 1, as a [v, B/v, 1, C, Bʹ] view.
 */
function ghostView(shape: readonly number[], axis: number, virtualBatchSize: number) {
  const product = (dims: readonly number[]) => dims.reduce((p, q) => p * q, 1);
  const ghostBatches = shape[0] / virtualBatchSize;
  const channels = shape[axis];
  const before = product(shape.slice(1, axis));
  const after = product(shape.slice(axis + 1));
  const trim = (dims: number[]) => (after === 1 ? dims.slice(0, 4) : dims);
  const samples = shape[0];
  return {
    ghostBatches,
    channels,
    valuesPerStatistic: virtualBatchSize * before * after,
    view: trim([virtualBatchSize, ghostBatches, before, channels, after]),
    perChannel: (t: tf.Tensor) => tf.reshape(t, trim([1, 1, 1, channels, 1])),
    mean: (t: tf.Tensor) => tf.tidy(() => {
      // (An [N, C] input holds one value per (sample, channel) already.)
      const perSample = before * after === 1 ? t : meanPerSampleChannel(t, samples, before, channels, after);
      // Over the v samples of each ghost batch: rows of [v, (B/v)·C], averaged by pooling.
      const overSamples = meanPerSampleChannel(perSample, 1, virtualBatchSize, ghostBatches * channels, 1);
      return tf.reshape(overSamples, trim([1, ghostBatches, 1, channels, 1]));
    }),
  };
}
