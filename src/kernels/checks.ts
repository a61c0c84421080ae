/**
 * Input checks shared by the public ops: each failure is a
 * NormalizationShapeError naming the op, the argument and the shapes, thrown
 * before anything runs (so a failed call allocates nothing).
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationConfigError, NormalizationShapeError} from '../errors';
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

/**
 * Checks the options object of an op and its `epsilon` (a finite number > 0,
 * as the layers require), before any tensor is made.
 */
export function checkOptions(op: string, args: unknown, fields: string): void {
  if (args == null || typeof args !== 'object') {
    throw new NormalizationConfigError(op, 'args', args,
        `${op}: the options object {${fields}} is required; received ${describeValue(args)}.`);
  }
  checkEpsilon(op, (args as {epsilon?: unknown}).epsilon);
}

/** Checks an op's epsilon: a finite number > 0, as the layers require. */
export function checkEpsilon(op: string, epsilon: unknown): void {
  if (typeof epsilon !== 'number' || !Number.isFinite(epsilon) || epsilon <= 0) {
    throw new NormalizationConfigError(op, 'epsilon', epsilon,
        `${op}: epsilon must be a finite number > 0 (the layers' default is 1e-3); received ${describeValue(epsilon)}.`);
  }
}

/** A value as a message shows it: strings quoted, so that '8' and 8 differ. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/** An op's `statisticsGradients` option: true when absent, else it must be a boolean. */
export function checkStatisticsGradients(op: string, value: unknown): boolean {
  const statisticsGradients = value ?? true;
  if (typeof statisticsGradients !== 'boolean') {
    throw new NormalizationConfigError(op, 'statisticsGradients', statisticsGradients,
        `${op}: statisticsGradients must be true or false; received ${describeValue(statisticsGradients)}.`);
  }
  return statisticsGradients;
}
