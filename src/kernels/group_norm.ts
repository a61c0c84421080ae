/**
 * Group normalization (Wu & He 2018) as tfjs kernels with a hand-written gradient.
 *
 * The channel axis is split into G groups of C/G channels; each (sample, group)
 * is normalized with its own mean and biased variance over all of its values:
 *   x̂ = (x − μ_ng)/√(σ²_ng + ε),  y = γ_c·x̂ + β_c.
 * G = 1 is layer normalization over all non-batch axes, G = C instance normalization.
 * Backward, per (sample, group), with g = dy·γ and means over the group's values:
 *   dx = (1/√(σ²+ε))·(g − mean(g) − x̂·mean(g·x̂))
 *   dγ = Σ_{n, positions} dy·x̂,  dβ = Σ_{n, positions} dy
 *
 * The composite kernels read x as [N, A, G, C/G, B]: A = product of the
 * dimensions between the batch and the channel axis (channels-last), B = product
 * of those after it (channels-first); statistics reduce over axes [1, 3, 4].
 */
import * as tf from '@tensorflow/tfjs-core';
import {defineComposite, runKernel} from './registry';

export const GROUP_NORM = 'TfjsNormalizationGroupNorm';
export const GROUP_NORM_GRAD = 'TfjsNormalizationGroupNormGrad';

export interface GroupNormArgs {
  /** The channel axis; negative counts from the end. */
  axis: number;
  /** Number of groups G, or -1 for one group per channel. */
  groups: number;
  epsilon: number;
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
 * Normalizes `x` per (sample, group). `gamma`/`beta` of shape [C] may be null
 * (scale/center off). Only `y` carries a gradient.
 */
export function groupNorm(x: tf.Tensor, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
    args: GroupNormArgs): GroupNormResult {
  const rank = x.shape.length;
  const axis = args.axis < 0 ? args.axis + rank : args.axis;
  if (rank < 2 || axis < 1 || axis >= rank) {
    throw new Error(`groupNorm: axis ${args.axis} must name a non-batch axis of an input of rank >= 2; ` +
        `received shape [${x.shape.join(', ')}].`);
  }
  if (!(Number.isInteger(args.groups) && (args.groups >= 1 || args.groups === -1))) {
    throw new Error(`groupNorm: groups must be a positive integer or -1; received ${args.groups}.`);
  }
  const groups = resolveGroups('groupNorm', args.groups, x.shape[axis]);
  // The gradient saves gamma, so the kernel always gets one (ones when scale is off).
  const scale = gamma ?? tf.ones([x.shape[axis]]);
  const [y, mean, variance] = runKernel(GROUP_NORM, {x, gamma: scale, beta}, {axis, groups, epsilon: args.epsilon});
  if (gamma == null) scale.dispose();
  return {y, mean, variance} as GroupNormResult;
}

interface Attrs {
  axis: number;
  groups: number;
  epsilon: number;
}

/** The [N, A, G, C/G, B] view and the shape γ, β broadcast to against it. */
function groupView(shape: readonly number[], {axis, groups}: Attrs): {view: number[]; param: number[]} {
  let a = 1;
  let b = 1;
  for (let i = 1; i < axis; i++) a *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) b *= shape[i];
  const perGroup = shape[axis] / groups;
  return {view: [shape[0], a, groups, perGroup, b], param: [1, 1, groups, perGroup, 1]};
}

const GROUP_AXES = [1, 3, 4];
// Per-channel parameter gradients sum over everything but the channel (G, C/G).
const CHANNEL_SUM_AXES = [0, 1, 4];

tf.registerGradient({
  kernelName: GROUP_NORM,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [false, true, true],
  gradFunc: (dys, saved, attrs) => {
    const [x, gamma, mean, variance] = saved;
    const [dx, dGamma, dBeta] = runKernel(GROUP_NORM_GRAD,
        {dy: (dys as tf.Tensor[])[0], x, mean, variance, gamma}, attrs as unknown as Record<string, unknown>);
    return {x: () => dx, gamma: () => dGamma, beta: () => dBeta};
  },
});

defineComposite(GROUP_NORM, (inputs, attrs) => {
  const {x, gamma, beta} = inputs;
  const a = attrs as unknown as Attrs;
  const {view, param} = groupView(x.shape, a);
  const xv = tf.reshape(x, view);
  const {mean, variance} = tf.moments(xv, GROUP_AXES, true);
  let y = tf.mul(tf.mul(tf.sub(xv, mean), tf.rsqrt(tf.add(variance, a.epsilon))),
      tf.reshape(gamma, param));
  if (beta != null) y = tf.add(y, tf.reshape(beta, param));
  const perGroup = [x.shape[0], a.groups];
  return [tf.reshape(y, x.shape), tf.reshape(mean, perGroup), tf.reshape(variance, perGroup)];
});

defineComposite(GROUP_NORM_GRAD, (inputs, attrs) => {
  const {dy, x, mean, variance, gamma} = inputs;
  const a = attrs as unknown as Attrs;
  const {view, param} = groupView(x.shape, a);
  const stat = (t: tf.Tensor) => tf.reshape(t, [x.shape[0], 1, a.groups, 1, 1]);
  const invStd = tf.rsqrt(tf.add(stat(variance), a.epsilon));
  const xhat = tf.mul(tf.sub(tf.reshape(x, view), stat(mean)), invStd);
  const dyv = tf.reshape(dy, view);
  const g = tf.mul(dyv, tf.reshape(gamma, param));
  const meanG = tf.mean(g, GROUP_AXES, true);
  const meanGXhat = tf.mean(tf.mul(g, xhat), GROUP_AXES, true);
  const dx = tf.mul(invStd, tf.sub(tf.sub(g, meanG), tf.mul(xhat, meanGXhat)));
  const channels = [x.shape[a.axis]];
  const dGamma = tf.reshape(tf.sum(tf.mul(dyv, xhat), CHANNEL_SUM_AXES), channels);
  const dBeta = tf.reshape(tf.sum(dyv, CHANNEL_SUM_AXES), channels);
  return [tf.reshape(dx, x.shape), dGamma, dBeta];
});
