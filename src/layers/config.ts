/**
 * Config plumbing shared by every layer: validation with clear messages, and
 * resolution of initializers, regularizers and constraints through the tfjs
 * serialization registry (the same registry `tf.loadLayersModel` reads, so
 * names and `{className, config}` objects resolve exactly as in tfjs-layers).
 */
import * as tf from '@tensorflow/tfjs-core';
import {LAYERS_BASE_CLASSES, registeredClass, type Constraint, type Initializer, type Regularizer} from '../tfjs_internals';
import {NormalizationConfigError} from '../errors';

export type {Initializer, Regularizer, Constraint};

/** A name (`'zeros'`), a serialized `{className, config}` object, or an instance. */
export type Identifier<T> = string | T | {className: string; config?: tf.serialization.ConfigDict};

// tfjs-layers' own short names (its *_IDENTIFIER_REGISTRY_SYMBOL_MAPs).
const SHORT_NAMES: Record<string, string> = {
  constant: 'Constant', glorotNormal: 'GlorotNormal', glorotUniform: 'GlorotUniform',
  heNormal: 'HeNormal', heUniform: 'HeUniform', identity: 'Identity',
  leCunNormal: 'LeCunNormal', leCunUniform: 'LeCunUniform', ones: 'Ones',
  orthogonal: 'Orthogonal', randomNormal: 'RandomNormal', randomUniform: 'RandomUniform',
  truncatedNormal: 'TruncatedNormal', varianceScaling: 'VarianceScaling', zeros: 'Zeros',
  l1l2: 'L1L2', l1: 'L1L2', l2: 'L1L2',
  maxNorm: 'MaxNorm', minMaxNorm: 'MinMaxNorm', nonNeg: 'NonNeg', unitNorm: 'UnitNorm',
};

type Kind = 'initializer' | 'regularizer' | 'constraint';

// The abstract base class of each kind (tfjs-layers exports the factories, not the bases).
const BASE: Readonly<Record<Kind, Function>> = LAYERS_BASE_CLASSES;

/** An error that names the layer, the field, the value and what is allowed. */
export function configError(layer: string, field: string, value: unknown, allowed: string): NormalizationConfigError {
  return new NormalizationConfigError(layer, field, value, `${layer}: invalid ${field} ${describe(value)}; ${allowed}.`);
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  try {
    const s = JSON.stringify(value);
    return s.length > 80 ? s.slice(0, 77) + '...' : s;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function checkNumber(
    layer: string, field: string, value: unknown,
    range: {min?: number; max?: number; minExclusive?: boolean; integer?: boolean} = {}): number {
  const {min, max, minExclusive, integer} = range;
  const ok = typeof value === 'number' && Number.isFinite(value) &&
      (!integer || Number.isInteger(value)) &&
      (min == null || (minExclusive ? value > min : value >= min)) &&
      (max == null || value <= max);
  if (!ok) {
    const kind = integer ? 'an integer' : 'a finite number';
    const lo = min == null ? '' : minExclusive ? ` > ${min}` : ` >= ${min}`;
    const hi = max == null ? '' : `${lo ? ' and' : ''} <= ${max}`;
    throw configError(layer, field, value, `expected ${kind}${lo}${hi}`);
  }
  return value as number;
}

export function checkBoolean(layer: string, field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw configError(layer, field, value, 'expected true or false');
  return value;
}

function resolve<T>(layer: string, field: string, kind: Kind, id: unknown): T | null {
  if (id == null) return null;
  if (id instanceof BASE[kind]) return id as T;
  let className: unknown;
  let config: unknown = {};
  if (typeof id === 'string') {
    className = Object.prototype.hasOwnProperty.call(SHORT_NAMES, id) ? SHORT_NAMES[id] : id;
    if (id === 'l1') config = {l1: 0.01, l2: 0};
    if (id === 'l2') config = {l1: 0, l2: 0.01};
  } else if (typeof id === 'object' && !Array.isArray(id)) {
    className = (id as Record<string, unknown>).className;
    config = (id as Record<string, unknown>).config ?? {};
  }
  const entry = typeof className === 'string' ? registeredClass(className) : undefined;
  if (entry == null || typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw configError(layer, field, id,
        `expected the name of a registered ${kind} (for example ${kind === 'initializer' ? "'zeros' or 'ones'" :
            kind === 'regularizer' ? "'l1l2'" : "'nonNeg' or 'maxNorm'"}), ` +
        `a {className, config} object, or a tf.${kind}s instance`);
  }
  const [cls, fromConfig] = entry;
  let instance: unknown;
  try {
    instance = fromConfig(cls, config as tf.serialization.ConfigDict);
  } catch (e) {
    throw configError(layer, field, id, `could not build it: ${(e as Error).message}`);
  }
  if (!(instance instanceof BASE[kind])) {
    throw configError(layer, field, id, `'${className}' is registered but is not ${kind === 'initializer' ? 'an' : 'a'} ${kind}`);
  }
  return instance as T;
}

export function resolveInitializer(layer: string, field: string, id: unknown, fallback: string): Initializer {
  return resolve<Initializer>(layer, field, 'initializer', id ?? fallback)!;
}
export function resolveRegularizer(layer: string, field: string, id: unknown): Regularizer | null {
  return resolve<Regularizer>(layer, field, 'regularizer', id);
}
export function resolveConstraint(layer: string, field: string, id: unknown): Constraint | null {
  return resolve<Constraint>(layer, field, 'constraint', id);
}

/** `{className, config}` as tfjs-layers serializes these objects, or null. */
export function serialize(obj: {getClassName(): string; getConfig(): tf.serialization.ConfigDict} | null):
    tf.serialization.ConfigDict | null {
  return obj == null ? null : {className: obj.getClassName(), config: obj.getConfig()};
}
