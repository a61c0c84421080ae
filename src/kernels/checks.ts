/**
 * Input checks shared by the public ops: each failure is a
 * NormalizationShapeError naming the op, the argument and the shapes, thrown
 * before anything runs (so a failed call allocates nothing).
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationShapeError} from '../errors';
import {resolveAxis} from './view';

const describeShape = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/**
 * Checks `x` (a float32 tensor of rank >= 2) and returns its channel axis as a
 * non-negative index; `axis` may be negative but not the batch axis 0.
 */
export function checkChannelInput(op: string, x: tf.Tensor, axis: number): number {
  if (!(x instanceof tf.Tensor)) {
    throw new NormalizationShapeError(op, 'x', `${op}: x must be a tf.Tensor; received ${typeof x}.`);
  }
  if (x.dtype !== 'float32') {
    throw new NormalizationShapeError(op, 'x',
        `${op}: x must have dtype float32; received ${x.dtype} (shape ${describeShape(x.shape)}).`);
  }
  if (x.rank < 2) {
    throw new NormalizationShapeError(op, 'x',
        `${op}: x must have rank >= 2 (batch and channels); received shape ${describeShape(x.shape)}.`);
  }
  const resolved = resolveAxis(axis, x.rank);
  if (resolved == null || resolved === 0) {
    throw new NormalizationShapeError(op, 'axis', `${op}: axis ${axis} must name a non-batch axis of an input of ` +
        `rank >= 2; received shape ${describeShape(x.shape)} (allowed: ${-(x.rank - 1)} to ${x.rank - 1}, not 0).`);
  }
  return resolved;
}

/** Checks that a per-channel argument is a float32 tensor of shape [channels] (or absent, when `optional`). */
export function checkChannelVector(op: string, name: string, value: tf.Tensor | null | undefined, x: tf.Tensor,
    axis: number, optional = false): void {
  if (value == null && optional) return;
  const channels = x.shape[axis];
  const where = `x of shape ${describeShape(x.shape)} has ${channels} channels on axis ${axis}`;
  if (!(value instanceof tf.Tensor)) {
    throw new NormalizationShapeError(op, name, `${op}: ${name} must be a tf.Tensor of shape [${channels}]; ` +
        `received ${typeof value} (${where}).`);
  }
  if (value.rank !== 1 || value.shape[0] !== channels) {
    throw new NormalizationShapeError(op, name, `${op}: ${name} must have shape [${channels}]; received ` +
        `${describeShape(value.shape)} (${where}).`);
  }
  if (value.dtype !== 'float32') {
    throw new NormalizationShapeError(op, name, `${op}: ${name} must have dtype float32; received ${value.dtype}.`);
  }
}
