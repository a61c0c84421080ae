/**
 * Group normalization (Wu & He 2018): a fused kernel on cpu, a composite of
 * tfjs ops elsewhere (./registry.ts), one hand-written backward for both.
 *
 * The channel axis is split into G groups of C/G channels; each (sample, group)
 * is normalized with its own mean and biased variance over all of its values:
 *   x̂ = (x − μ_ng)/√(σ²_ng + ε),  y = γ_c·x̂ + β_c.
 * G = 1 is layer normalization over all non-batch axes, G = C instance normalization.
 * Backward, per (sample, group), with g = dy·γ and means over the group's values:
 *   dx = (1/√(σ²+ε))·(g − mean(g) − x̂·mean(g·x̂))
 *   dγ = Σ_{n, positions} dy·x̂,  dβ = Σ_{n, positions} dy
 * The mean and variance outputs carry their true gradients too: on cpu folded
 * into the fused backward, elsewhere by autodiff of the tfjs ops.
 *
 * The composite kernels read x as [N, A, C, B]: A = product of the dimensions
 * between the batch and the channel axis (channels-last), B = product of those
 * after it (channels-first). Means over A and B per (sample, channel) come
 * from ./reduce.ts, then channels are averaged per group (small tensors);
 * full-size temporaries are disposed as soon as used.
 */
import * as tf from '@tensorflow/tfjs-core';
import {checkBatchNormInputs, runWithGamma, STATISTICS_GRADIENTS_OFF, withoutGradients} from './batch_norm';
import {checkOptions, checkStatisticsGradients} from './checks';
import {meanPerSampleChannel, recordedReduction, sumPerSampleChannel} from './reduce';
import {defineComposite, runKernel} from './registry';

export const GROUP_NORM = 'TfjsNormalizationGroupNorm';
export const GROUP_NORM_GRAD = 'TfjsNormalizationGroupNormGrad';

export interface GroupNormArgs {
  /** The channel axis; negative counts from the end. */
  axis: number;
  /** Number of groups G, or -1 for one group per channel. */
  groups: number;
  epsilon: number;
  /**
   * Whether the mean and variance outputs carry gradients. Default true.
   * false, for callers that only need y (GroupNormLayer): the backward does
   * only y's work (off cpu, x is saved once instead of twice), and a gradient
   * taken through a statistic throws a NormalizationConfigError naming this
   * option; y's gradients are the same.
   */
  statisticsGradients?: boolean;
}

export interface GroupNormResult {
  y: tf.Tensor;
  /** Mean per (sample, group), shape [N, G]. */
  mean: tf.Tensor2D;
  /** Biased variance per (sample, group), shape [N, G]. */
  variance: tf.Tensor2D;
}

/**
 * Resolves `groups` against the channel count: -1 means one group per channel.
 * `owner` names the layer or op in the error, which follows Keras's wording.
 */
export function resolveGroups(owner: string, groups: number, channels: number): number {
  const g = groups === -1 ? channels : groups;
  if (g > channels) {
    throw new Error(`${owner}: number of groups (${g}) cannot be more than the number of channels (${channels}).`);
  }
  if (channels % g !== 0) {
    throw new Error(`${owner}: the number of channels (${channels}) must be a multiple of the number of groups (${g}).`);
  }
  return g;
}

/**
 * Normalizes `x` (float32, rank >= 2) per (sample, group). `gamma`/`beta` of
 * shape [C] may be null (scale/center off). Every output carries its gradient
 * unless `statisticsGradients` is false.
 * @throws NormalizationConfigError for a missing `args`, an epsilon that is not
 *   a finite number > 0, or a statisticsGradients that is not a boolean.
 * @throws NormalizationShapeError for a non-float32 x, rank < 2, an axis out
 *   of range or 0, or gamma, beta not of shape [C]; Error for groups that do
 *   not divide C.
 */
export function groupNorm(x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: GroupNormArgs): GroupNormResult {
  const op = 'groupNorm';
  checkOptions(op, args, 'axis, groups, epsilon, statisticsGradients?');
  const axis = checkBatchNormInputs(op, x, gamma, beta, args.axis, undefined);
  if (!(Number.isInteger(args.groups) && (args.groups >= 1 || args.groups === -1))) {
    throw new Error(`groupNorm: groups must be a positive integer or -1; received ${args.groups}.`);
  }
  const groups = resolveGroups(op, args.groups, x.shape[axis]);
  const statisticsGradients = checkStatisticsGradients(op, args.statisticsGradients);
  const [y, mean, variance] = runWithGamma(GROUP_NORM, x, gamma, axis, {beta},
      {axis, groups, epsilon: args.epsilon, statisticsGradients});
  const statistics = {mean, variance} as Omit<GroupNormResult, 'y'>;
  return {y, ...(statisticsGradients ? statistics : withoutGradients(op, x, statistics, STATISTICS_GRADIENTS_OFF))};
}

interface Attrs {
  axis: number;
  groups: number;
  epsilon: number;
  /** false: the statistics' upstream gradients are ignored, and the composite computes them unrecorded. */
  statisticsGradients?: boolean;
}

/**
 * How the composites see x for G groups: `view` to reshape x to, and helpers
 * for per-(sample, channel) tensors [N, C] and per-(sample, group) ones [N, G].
 * In general the view is [N, A, C, B] and per-group values are spread to
 * [N, 1, C, 1] (the wasm backend broadcasts that fast, [N, 1, G, 1] against
 * [N, A, G, C/G] slowly). With one value per (sample, channel) (A = B = 1, a
 * [N, C] input) the view is [N, G, C/G], and per-group values are expanded to
 * that full size by a product with ones: broadcasting [N, G, 1] against it
 * takes the wasm backend several times longer than the product.
 */
function groupOps(shape: readonly number[], axis: number, groups: number) {
  const n = shape[0];
  const c = shape[axis];
  const size = c / groups;
  let a = 1;
  let b = 1;
  for (let i = 1; i < axis; i++) a *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) b *= shape[i];
  const flat = a === 1 && b === 1;
  // A product with ones, not tf.tile: the wasm backend's Tile is a slow loop.
  const ones = tf.ones(flat ? [1, size] : [1, 1, size]);
  /** [N, G] repeated for each channel of the group, shaped to broadcast against the view. */
  const spread = (t: tf.Tensor) => flat ?
    tf.reshape(tf.matMul(tf.reshape(t, [n * groups, 1]), ones), [n, groups, size]) :
    tf.reshape(tf.mul(tf.reshape(t, [n, groups, 1]), ones), [n, 1, c, 1]);
  /** [N, C] or [C] shaped to broadcast against the view. */
  const param = (t: tf.Tensor) => tf.reshape(t, [t.shape.length === 1 ? 1 : n, ...(flat ? [groups, size] : [1, c, 1])]);
  return {
    view: flat ? [n, groups, size] : [n, a, c, b],
    /** Values per (sample, channel): A·B. */
    positions: a * b,
    /** Mean over A and B: [N, C]. */
    channelMean: (t: tf.Tensor) => flat ? tf.reshape(t, [n, c]) : tf.tidy(() => meanPerSampleChannel(t, n, a, c, b)),
    /** [N, C] averaged over each group's channels: [N, G]. */
    groupMean: (t: tf.Tensor) => tf.mean(tf.reshape(t, [n, groups, size]), 2),
    spread,
    param,
    /**
     * (t − center)·scale·γ + β for a view-shaped t, with center and scale per
     * (sample, group) and γ, β ([C]; β may be null) per channel. In general
     * the factors fold per (sample, channel) first: two full-size passes. For
     * an [N, C] input that folding would itself be full-size, so four.
     */
    affine: (t: tf.Tensor, center: tf.Tensor, scale: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor | undefined) => {
      if (flat) {
        const y = tf.mul(tf.mul(tf.sub(t, spread(center)), spread(scale)), param(gamma));
        return beta == null ? y : tf.add(y, param(beta));
      }
      const s = tf.mul(spread(scale), param(gamma));
      const o = tf.mul(spread(center), s);
      return tf.add(tf.mul(t, s), beta == null ? tf.neg(o) : tf.sub(param(beta), o));
    },
  };
}

tf.registerGradient({
  kernelName: GROUP_NORM,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [dy, meanGrad, varianceGrad] = dys as Array<tf.Tensor | null>;
    const [x, gamma, mean, variance] = saved;
    const {axis, groups, epsilon, statisticsGradients} = attrs as unknown as Attrs;
    const withStatistics = statisticsGradients !== false;
    const [dx, dGamma, dBeta] = runKernel(GROUP_NORM_GRAD, {
      // Only the statistics may be used: y's upstream gradient is then 0.
      dy: dy ?? tf.zerosLike(x), x, mean, variance, gamma,
      meanGrad: withStatistics ? meanGrad : null, varianceGrad: withStatistics ? varianceGrad : null,
    }, {axis, groups, epsilon});
    return {x: () => dx, gamma: () => dGamma, beta: () => dBeta};
  },
});

defineComposite(GROUP_NORM, (inputs, attrs) => {
  const {x, gamma, beta} = inputs;
  const {axis, groups, epsilon, statisticsGradients} = attrs as unknown as Attrs;
  const {view, positions, channelMean, groupMean, spread, affine} = groupOps(x.shape, axis, groups);
  const count = positions * x.shape[axis] / groups;
  // The backward passes spread [N, G] values with ones of their own: these are gone by then.
  const spreadLater = (t: tf.Tensor) => groupOps(x.shape, axis, groups).spread(t);
  const groupMeanOf = recordedReduction((t) => groupMean(channelMean(t)),
      (dy) => tf.broadcastTo(tf.div(spreadLater(dy), count), view));
  // The statistics, as differentiable tfjs ops: autodiff gives their gradients where the tape records them.
  const statisticsOf = (input: tf.Tensor) => {
    const xv = tf.reshape(input, view);
    // The mean in two steps (a shift, the first estimate, then the mean of x − shift) keeps
    // float32 sums accurate when the mean dwarfs the spread. (Slicing out one
    // value per group as the shift would cost more than the mean on wasm.)
    const shift = groupMeanOf(xv);
    const shiftSpread = spread(shift);
    // x − shift as one recorded op that saves nothing (tfjs's Sub saves both inputs, a copy on wasm);
    // its gradient for the spread shift sums dy over the positions of each (sample, channel).
    const shifted = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
      const [values, center] = args as tf.Tensor[];
      return {
        value: tf.sub(values, center),
        gradFunc: (dy: tf.Tensor) => [dy, tf.neg(center.shape.length === dy.shape.length && center.size === dy.size ?
          dy : tf.reshape(sumPerSampleChannel(dy, x.shape[0], view[1], x.shape[axis], view[3]), center.shape))],
      };
    })(xv, shiftSpread);
    const shiftedMean = groupMeanOf(shifted);
    // The shift is off by float32 summation error only, a small fraction of σ
    // unless |μ|/σ nears 1/ε(float32), so shiftedMean² is negligible against
    // mean(shifted²) and var = mean(shifted²) − shiftedMean² cancels nothing: one
    // pass with a same-shape square instead of a broadcast difference.
    // (relu: rounding could take a constant group's variance just below 0.)
    const meanSquare = recordedReduction((t) => groupMean(channelMean(tf.square(t))),
        (dy, [xSaved, shiftSaved]) => tf.mul(tf.sub(xSaved, shiftSaved), tf.mul(spreadLater(dy), 2 / count)),
        [xv, shiftSpread]);
    const variance = tf.relu(tf.sub(meanSquare(shifted), tf.square(shiftedMean)));
    return {shifted, shiftedMean, mean: tf.add(shift, shiftedMean), variance};
  };
  // Recorded on the tape before y, or, without their gradients, computed inside y's
  // forward, where nothing is recorded and only y's backward saves x.
  const recorded = statisticsGradients === false ? null : statisticsOf(x);
  let unrecorded: {mean: tf.Tensor; variance: tf.Tensor} | null = null;
  // y = (x − μ)·γ/σ + β = (shifted − shiftedMean)·(1/σ)·γ + β, with the hand-written backward.
  const normalize = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xIn, gammaIn, betaIn] = args as tf.Tensor[];
    const {shifted, shiftedMean, mean, variance} = recorded ?? statisticsOf(xIn);
    save([xIn, gammaIn, mean, variance]);
    const value = tf.tidy(() =>
      tf.reshape(affine(shifted, shiftedMean, tf.rsqrt(tf.add(variance, epsilon)), gammaIn, betaIn), x.shape));
    if (recorded == null) {
      // The forward's scope disposes all but its value: keep the statistics out of it (released below).
      unrecorded = {mean: tf.keep(mean), variance: tf.keep(variance)};
    }
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xSaved, gammaSaved, meanSaved, varianceSaved] = saved;
      const grads = compositeGroupNormGrad(
          {dy, x: xSaved, gamma: gammaSaved, mean: meanSaved, variance: varianceSaved}, attrs);
      return betaIn == null ? grads.slice(0, 2) : grads;
    };
    return {value, gradFunc};
  });
  const y = beta == null ? normalize(x, gamma) : normalize(x, gamma, beta);
  if (recorded != null) {
    // Full-size temporaries are disposed as soon as they are used.
    recorded.shifted.dispose();
    return [y, recorded.mean, recorded.variance];
  }
  // Clones share the data and belong to this scope; the kept originals are then released.
  const {mean, variance} = unrecorded!;
  const outputs = [tf.clone(mean), tf.clone(variance)];
  tf.dispose([mean, variance]);
  return [y, ...outputs];
});

function compositeGroupNormGrad(inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): tf.Tensor[] {
  const {dy, x, mean, variance, gamma} = inputs;
  const {axis, groups, epsilon} = attrs as unknown as Attrs;
  const {view, positions, channelMean, groupMean, spread, param} = groupOps(x.shape, axis, groups);
  const [n, c] = [x.shape[0], x.shape[axis]];
  const dyv = tf.reshape(dy, view);
  const centered = tf.tidy(() => tf.sub(tf.reshape(x, view), spread(mean)));
  const invStd = tf.rsqrt(tf.add(variance, epsilon));
  const meanDy = channelMean(dyv);
  const meanDyCentered = tf.tidy(() => channelMean(tf.mul(dyv, centered)));
  // dx = (1/σ)·(γ·dy − mean(γ·dy) − x̂·mean(γ·dy·x̂)) = dy·γ/σ + centered·centeredScale + constant
  // per (sample, group).
  const g = tf.reshape(gamma, [1, c]);
  const centeredScale = tf.neg(tf.mul(tf.pow(invStd, 3), groupMean(tf.mul(meanDyCentered, g))));
  const constant = tf.neg(tf.mul(invStd, groupMean(tf.mul(meanDy, g))));
  const partial = tf.tidy(() => tf.add(tf.mul(centered, spread(centeredScale)), spread(constant)));
  centered.dispose();
  const dx = tf.tidy(() => tf.add(tf.mul(dyv, tf.mul(spread(invStd), param(gamma))), partial));
  partial.dispose();
  // dγ_c = Σ_n Σdy·(x − μ)·(1/σ), dβ_c = Σ_n Σdy: per-(sample, channel) means times
  // their count, averaged over samples by pooling (./reduce.ts).
  const dyXhat = tf.reshape(tf.mul(tf.reshape(meanDyCentered, [n, groups, c / groups]), tf.reshape(invStd, [n, groups, 1])), [n, c]);
  const overSamples = (t: tf.Tensor) => tf.mul(tf.reshape(meanPerSampleChannel(t, 1, n, c, 1), [c]), n * positions);
  return [tf.reshape(dx, x.shape), overSamples(dyXhat), overSamples(meanDy)];
}

defineComposite(GROUP_NORM_GRAD, compositeGroupNormGrad);
