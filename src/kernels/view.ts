/**
 * Every per-channel normalization reads its input as a 3-D view
 * [outer, channels, inner]: outer = product of the dimensions before the
 * channel axis, inner = product of those after it. Channels-last inputs have
 * inner = 1, channels-first NCHW inputs have outer = N. Kernels loop over this
 * view; the composite paths reshape to it. The reshape is free (no copy).
 */
export interface ChannelView {
  outer: number;
  channels: number;
  inner: number;
}

export function channelView(shape: readonly number[], axis: number): ChannelView {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return {outer, channels: shape[axis], inner};
}

/** The view as a tensor shape, dropping a trailing inner dimension of 1. */
export function viewShape(v: ChannelView): number[] {
  return v.inner === 1 ? [v.outer, v.channels] : [v.outer, v.channels, v.inner];
}

/** Shape of a per-channel parameter broadcast against `viewShape(v)`. */
export function paramShape(v: ChannelView): number[] {
  return v.inner === 1 ? [1, v.channels] : [1, v.channels, 1];
}

/**
 * An axis of a rank-`rank` tensor as a non-negative index: negative values
 * count from the end (Keras, tfjs). Null when `axis` is not an integer in
 * [−rank, rank − 1]. Channel axes must also not be the batch axis 0: callers
 * check that, each with its own error.
 */
export function resolveAxis(axis: number, rank: number): number | null {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) return null;
  return axis < 0 ? axis + rank : axis;
}
