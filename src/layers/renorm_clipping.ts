/**
 * Batch Renormalization's clipping limits and the paper's warm-up schedule:
 * validation, and the limits in force at a given training step.
 */
import {checkNumber, configError} from './config';

/**
 * Limits on the renorm corrections: r is clipped to [rmin, rmax], d to
 * [−dmax, dmax]. A missing key means no clipping on that side, as in Keras
 * (rmin defaults to 0, and r is positive).
 */
export interface RenormClipping {
  rmax?: number;
  rmin?: number;
  dmax?: number;
}

/**
 * The warm-up of Ioffe (2017): plain batch normalization (rmin = rmax = 1,
 * dmax = 0) for the first `plainSteps` training steps, then rmin and rmax move
 * linearly to their `renormClipping` values, reached at step `rmaxReachedAt`,
 * and dmax to its value, reached at step `dmaxReachedAt`. The paper used
 * {plainSteps: 5000, rmaxReachedAt: 40000, dmaxReachedAt: 25000} with rmax 3, dmax 5.
 */
export interface RenormWarmup {
  plainSteps: number;
  rmaxReachedAt: number;
  dmaxReachedAt: number;
}

/** The limits as the kernel takes them; Infinity = unclipped. */
export interface RenormLimits {
  rmin: number;
  rmax: number;
  dmax: number;
}

const CLIPPING_KEYS = ['rmax', 'rmin', 'dmax'];
const WARMUP_KEYS = ['plainSteps', 'rmaxReachedAt', 'dmaxReachedAt'];

/** Validates `renormClipping`; null values count as missing keys. */
export function checkRenormClipping(layer: string, value: unknown): RenormClipping {
  const given = checkObject(layer, 'renormClipping', value, CLIPPING_KEYS, false);
  const clipping: RenormClipping = {};
  for (const key of CLIPPING_KEYS as Array<keyof RenormClipping>) {
    if (given[key] == null) continue;
    clipping[key] = checkNumber(layer, `renormClipping.${key}`, given[key], {min: key === 'rmax' ? undefined : 0});
  }
  const rmin = clipping.rmin ?? 0;
  if (clipping.rmax != null && clipping.rmax < rmin) {
    throw configError(layer, 'renormClipping', value,
        `rmax (${clipping.rmax}) must be >= rmin (${rmin}${clipping.rmin == null ? ', the default' : ''})`);
  }
  return clipping;
}

/** Validates `renormWarmup`; null means no warm-up. */
export function checkRenormWarmup(layer: string, value: unknown, clipping: RenormClipping): RenormWarmup | null {
  if (value == null) return null;
  const given = checkObject(layer, 'renormWarmup', value, WARMUP_KEYS, true);
  const plainSteps = checkNumber(layer, 'renormWarmup.plainSteps', given.plainSteps, {min: 0, integer: true});
  const reachedAt = (key: string) => checkNumber(layer, `renormWarmup.${key}`, given[key], {min: plainSteps, integer: true});
  const warmup = {plainSteps, rmaxReachedAt: reachedAt('rmaxReachedAt'), dmaxReachedAt: reachedAt('dmaxReachedAt')};
  if (clipping.rmax == null || clipping.dmax == null) {
    throw configError(layer, 'renormWarmup', value, 'the warm-up relaxes rmax and dmax linearly to their ' +
        `renormClipping values, so renormClipping must set both; it is ${JSON.stringify(clipping)}`);
  }
  return warmup;
}

/** The step after which the warm-up no longer changes the limits. */
export function warmupEnd(warmup: RenormWarmup): number {
  return Math.max(warmup.rmaxReachedAt, warmup.dmaxReachedAt);
}

/** The clipping limits in force after `step` training steps. */
export function renormLimits(clipping: RenormClipping, warmup: RenormWarmup | null, step: number): RenormLimits {
  const rmin = clipping.rmin ?? 0;
  const rmax = clipping.rmax ?? Infinity;
  const dmax = clipping.dmax ?? Infinity;
  if (warmup == null) return {rmin, rmax, dmax};
  const fr = progress(step, warmup.plainSteps, warmup.rmaxReachedAt);
  const fd = progress(step, warmup.plainSteps, warmup.dmaxReachedAt);
  return {rmin: lerp(1, rmin, fr), rmax: lerp(1, rmax, fr), dmax: lerp(0, dmax, fd)};
}

/** Exact at both ends, so the schedule ends on the configured limits. */
function lerp(from: number, to: number, f: number): number {
  return (1 - f) * from + f * to;
}

/** 0 up to `start`, 1 from `end`, linear in between. */
function progress(step: number, start: number, end: number): number {
  if (end <= start) return step >= start ? 1 : 0;
  return Math.min(Math.max((step - start) / (end - start), 0), 1);
}

function checkObject(layer: string, field: string, value: unknown, keys: string[], required: boolean):
    Record<string, unknown> {
  const allowed = `expected an object with ${required ? '' : 'optional '}keys ${keys.join(', ')}`;
  if (value == null && !required) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw configError(layer, field, value, allowed);
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!keys.includes(key)) throw configError(layer, field, value, `unknown key '${key}'; ${allowed}`);
  }
  for (const key of required ? keys : []) {
    if (record[key] == null) throw configError(layer, field, value, `missing key '${key}'; ${allowed}`);
  }
  return record;
}
