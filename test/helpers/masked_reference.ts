/**
 * Float64 reference of Keras 3's masked batch moments
 * (keras/src/layers/normalization/batch_normalization.py `_moments(inputs, mask)`),
 * written with plain loops: w = 1 at unmasked positions, m = Σ w,
 *   μ = Σ w·x / (m + 1e-7),  σ² = Σ w·(w·x − μ)² / (m + 1e-7).
 */
import {channelOf, Ref} from './reference';

/** Keras's `backend.epsilon()`. */
export const KERAS_EPSILON = 1e-7;

/** Index into a mask of the input's shape without `axis`, for flat element i of x. */
export function maskIndex(shape: number[], axis: number, i: number): number {
  let inner = 1;
  for (let k = axis + 1; k < shape.length; k++) inner *= shape[k];
  return Math.floor(i / (inner * shape[axis])) * inner + (i % inner);
}

/** Per-channel masked mean and variance, as Keras 3 computes them, and the unmasked count m. */
export function maskedMomentsRef(x: Ref, axis: number, mask: ArrayLike<number | boolean>):
    {mean: number[]; variance: number[]; count: number} {
  const c = x.shape[axis];
  const weight = (i: number) => (mask[maskIndex(x.shape, axis, i)] ? 1 : 0);
  let count = 0;
  for (let j = 0; j < mask.length; j++) count += mask[j] ? 1 : 0;
  const sum = new Array(c).fill(0);
  x.data.forEach((v, i) => { sum[channelOf(x.shape, axis, i)] += weight(i) * v; });
  const mean = sum.map((s) => s / (count + KERAS_EPSILON));
  const squares = new Array(c).fill(0);
  x.data.forEach((v, i) => {
    const k = channelOf(x.shape, axis, i);
    squares[k] += weight(i) * (weight(i) * v - mean[k]) ** 2;
  });
  return {mean, variance: squares.map((s) => s / (count + KERAS_EPSILON)), count};
}
