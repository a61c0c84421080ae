/**
 * NormalizationLayer: the shared base of every layer in this package, and the
 * class to extend for a variant of your own.
 *
 * It owns what all normalization layers have in common:
 *  - config parsing and validation (clear errors naming layer, field, value),
 *  - the channel axis (negative values, channels-first, any rank >= 2),
 *  - gamma/beta with their initializers, regularizers and constraints,
 *  - the shared `getConfig` keys,
 *  - the training/inference decision (`isTraining`).
 *
 * Extension points, in the order they run:
 *  - `static configFields`: the config keys the subclass adds (unknown keys are
 *    rejected, so a typo such as `momentun` fails instead of being ignored).
 *  - `buildStatistics(inputShape, channels)`: add the subclass's own weights
 *    (moving statistics) after gamma and beta; validate shape-dependent config.
 *    `static statisticWeights(config)` names those weights, so that a model
 *    file can be checked before anything is built (src/io/validate.ts).
 *  - `normalize(x, training)`: the computation; runs inside `tf.tidy`.
 *  - `getConfig()`: call `super.getConfig()` and add the subclass's keys.
 * Register the subclass with `tf.serialization.registerClass(MyLayer)` and give
 * it a unique `static className`.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type {Kwargs, LayerArgs} from '../tfjs_internals';
import {
  checkBoolean, checkNumber, configError, Constraint, Identifier, Initializer, Regularizer,
  resolveConstraint, resolveInitializer, resolveRegularizer, serialize,
} from './config';

export type {LayerArgs, Kwargs};

export interface NormalizationLayerArgs extends LayerArgs {
  /** The channel (feature) axis; negative counts from the end. Default -1 (channels-last). Use 1 for channels-first. */
  axis?: number;
  /** Small constant added to the variance to avoid dividing by zero. Default 1e-3 (Keras). */
  epsilon?: number;
  /** Add the learned offset beta. Default true. */
  center?: boolean;
  /** Multiply by the learned scale gamma. Default true. */
  scale?: boolean;
  /** Initializer for beta. Default 'zeros'. */
  betaInitializer?: Identifier<Initializer>;
  /** Initializer for gamma. Default 'ones'. */
  gammaInitializer?: Identifier<Initializer>;
  /** Regularizer for beta. Default none. */
  betaRegularizer?: Identifier<Regularizer>;
  /** Regularizer for gamma. Default none. */
  gammaRegularizer?: Identifier<Regularizer>;
  /** Constraint on beta after each optimizer update. Default none. */
  betaConstraint?: Identifier<Constraint>;
  /** Constraint on gamma after each optimizer update. Default none. */
  gammaConstraint?: Identifier<Constraint>;
}

// Per-channel weights are allocated at build, before a model file's weights are
// read: a corrupt or hostile declared shape must not allocate gigabytes.
const MAX_CHANNELS = 2 ** 24;

// Keys tfjs-layers' Layer accepts or writes in getConfig, and `customObjects`,
// which tfjs's loader adds to every config it deserializes.
const LAYER_FIELDS = [
  'name', 'trainable', 'dtype', 'inputShape', 'batchInputShape', 'batchSize', 'weights', 'inputDType',
  'customObjects',
];

export abstract class NormalizationLayer extends tfl.layers.Layer {
  /** The name the tfjs serialization registry stores the class under. Each subclass sets its own. */
  declare static className: string;
  /** Config keys this class accepts beyond tfjs's Layer keys. Subclasses extend the list. */
  static configFields: readonly string[] = [
    'axis', 'epsilon', 'center', 'scale', 'betaInitializer', 'gammaInitializer',
    'betaRegularizer', 'gammaRegularizer', 'betaConstraint', 'gammaConstraint',
  ];
  /** Weight names whose values must be >= 0 when written from outside (variances, standard deviations). */
  static nonNegativeWeights: readonly string[] = [];

  /**
   * The weights a layer of this class, saved with `config` (the model file's
   * snake_case layer config), holds, worked out without building it: model-file
   * validation (src/io/validate.ts) checks a file against this before tfjs
   * allocates anything. A subclass that adds weights in `buildStatistics`
   * declares them in `statisticWeights`.
   */
  static savedWeights(config: Record<string, unknown>): SavedWeight[] {
    const names: StatisticWeight[] = [
      ...(config.scale === false ? [] : [{name: 'gamma'}]),
      ...(config.center === false ? [] : [{name: 'beta'}]),
      ...this.statisticWeights(config),
    ];
    return names.map(({name, scalar}) =>
      ({name, scalar: scalar === true, nonNegative: this.nonNegativeWeights.includes(name)}));
  }

  /** The weights `buildStatistics` adds for a saved config, in order. */
  protected static statisticWeights(_config: Record<string, unknown>): StatisticWeight[] {
    return [];
  }

  /** The axis as configured (may be negative). */
  readonly axis: number;
  readonly epsilon: number;
  readonly center: boolean;
  readonly scale: boolean;
  protected readonly betaInitializer: Initializer;
  protected readonly gammaInitializer: Initializer;
  protected readonly betaRegularizer: Regularizer | null;
  protected readonly gammaRegularizer: Regularizer | null;
  protected readonly betaConstraint: Constraint | null;
  protected readonly gammaConstraint: Constraint | null;

  /** Learned scale, shape [channels]; null when `scale` is false. */
  gamma: tfl.LayerVariable | null = null;
  /** Learned offset, shape [channels]; null when `center` is false. */
  beta: tfl.LayerVariable | null = null;
  /** The channel axis resolved against the input rank; set by `build`. */
  protected channelAxis = -1;
  // True while `call` runs: the layer's own statistics updates skip the value check.
  private updatingOwnWeights = false;

  constructor(args: NormalizationLayerArgs = {}, defaultEpsilon = 1e-3) {
    super(checkFields(new.target, args));
    const name = this.describeLayer();
    this.axis = checkNumber(name, 'axis', args.axis ?? -1, {integer: true});
    this.epsilon = checkNumber(name, 'epsilon', args.epsilon ?? defaultEpsilon, {min: 0, minExclusive: true});
    this.center = checkBoolean(name, 'center', args.center ?? true);
    this.scale = checkBoolean(name, 'scale', args.scale ?? true);
    this.betaInitializer = resolveInitializer(name, 'betaInitializer', args.betaInitializer, 'zeros');
    this.gammaInitializer = resolveInitializer(name, 'gammaInitializer', args.gammaInitializer, 'ones');
    this.betaRegularizer = resolveRegularizer(name, 'betaRegularizer', args.betaRegularizer);
    this.gammaRegularizer = resolveRegularizer(name, 'gammaRegularizer', args.gammaRegularizer);
    this.betaConstraint = resolveConstraint(name, 'betaConstraint', args.betaConstraint);
    this.gammaConstraint = resolveConstraint(name, 'gammaConstraint', args.gammaConstraint);
    this.supportsMasking = true;
  }

  /** `ClassName 'layer_name'`, for error messages. */
  protected describeLayer(): string {
    return `${(this.constructor as typeof NormalizationLayer).className} '${this.name}'`;
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    if (Array.isArray(inputShape[0]) && inputShape.length !== 1) {
      throw new Error(`${this.describeLayer()}: expected one input, received ${inputShape.length}.`);
    }
    const rank = shape.length;
    const name = this.describeLayer();
    if (rank < 2) {
      throw new Error(`${name}: input must have rank >= 2 (batch and channels); received shape ${describeShape(shape)}.`);
    }
    const axis = this.axis < 0 ? this.axis + rank : this.axis;
    if (axis < 1 || axis >= rank) {
      throw configError(name, 'axis', this.axis,
          `for input shape ${describeShape(shape)} (rank ${rank}) the channel axis must be in ` +
          `[${-(rank - 1)}, ${rank - 1}] and not the batch axis 0`);
    }
    const channels = shape[axis];
    if (channels == null || !(channels > 0)) {
      throw new Error(`${name}: the channel axis ${this.axis} of input shape ${describeShape(shape)} ` +
          `must have a defined size; it is ${channels}.`);
    }
    if (channels > MAX_CHANNELS) {
      throw new Error(`${name}: the channel axis ${this.axis} of input shape ${describeShape(shape)} has ` +
          `${channels} channels; at most ${MAX_CHANNELS} are supported.`);
    }
    this.channelAxis = axis;
    this.inputSpec = [{ndim: rank, axes: {[axis]: channels}}];
    if (this.scale) {
      this.gamma = this.addWeight('gamma', [channels], 'float32', this.gammaInitializer,
          this.gammaRegularizer ?? undefined, true, this.gammaConstraint ?? undefined);
    }
    if (this.center) {
      this.beta = this.addWeight('beta', [channels], 'float32', this.betaInitializer,
          this.betaRegularizer ?? undefined, true, this.betaConstraint ?? undefined);
    }
    try {
      this.buildStatistics(shape, channels);
    } catch (e) {
      // A shape-dependent config error (e.g. groups vs channels) leaves no weights behind.
      for (const w of this.weights) w.dispose();
      throw e;
    }
    this.built = true;
  }

  /** Extension point: add weights beyond gamma/beta (moving statistics). */
  protected buildStatistics(_inputShape: tfl.Shape, _channels: number): void {}

  /**
   * The training decision: batch statistics only when the caller asks for
   * training (`model.fit` and `trainOnBatch` pass `training: true`) and the
   * layer is trainable. `trainable: false` means inference mode with frozen
   * statistics, as in TF2 Keras.
   */
  protected isTraining(kwargs: Kwargs): boolean {
    return kwargs != null && kwargs.training === true && this.trainable;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    if (Array.isArray(inputs) && inputs.length !== 1) {
      throw new Error(`${this.describeLayer()}: expected one input tensor, received ${inputs.length}.`);
    }
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (x.dtype !== 'float32') {
      throw new Error(`${this.describeLayer()}: input dtype must be float32; received ${x.dtype}.`);
    }
    const training = this.isTraining(kwargs);
    this.updatingOwnWeights = true;
    try {
      return tf.tidy(() => this.normalize(x, training));
    } finally {
      this.updatingOwnWeights = false;
    }
  }

  /**
   * Every weight checks values written from outside the layer (tf.loadLayersModel,
   * setWeights, a direct `write`): dtype, shape, finite values, and no negative
   * value in `nonNegativeWeights`. A poisoned model file fails at load with the
   * layer and weight named instead of producing NaN later. The layer's own
   * updates inside `call` skip the check, so training never waits on a data read.
   */
  protected override addWeight(...args: Parameters<tfl.layers.Layer['addWeight']>): tfl.LayerVariable {
    const weight = super.addWeight(...args);
    const write = weight.write.bind(weight);
    weight.write = (value: tf.Tensor) => {
      if (!this.updatingOwnWeights) this.checkWeightValue(args[0], weight, value);
      return write(value);
    };
    return weight;
  }

  private checkWeightValue(name: string, weight: tfl.LayerVariable, value: tf.Tensor): void {
    checkWeightValue(`${this.describeLayer()}: weight '${name}'`, weight.dtype, weight.shape as number[],
        {dtype: value.dtype, shape: value.shape, values: () => value.dataSync()},
        (this.constructor as typeof NormalizationLayer).nonNegativeWeights.includes(name));
  }

  /** Extension point: the computation. Runs inside `tf.tidy`. */
  protected abstract normalize(x: tf.Tensor, training: boolean): tf.Tensor;

  /** gamma's value, or null when `scale` is off. */
  protected gammaValue(): tf.Tensor1D | null {
    return this.gamma == null ? null : this.gamma.read() as tf.Tensor1D;
  }

  /** beta's value, or null when `center` is off. */
  protected betaValue(): tf.Tensor1D | null {
    return this.beta == null ? null : this.beta.read() as tf.Tensor1D;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      axis: this.axis,
      epsilon: this.epsilon,
      center: this.center,
      scale: this.scale,
      betaInitializer: serialize(this.betaInitializer),
      gammaInitializer: serialize(this.gammaInitializer),
      betaRegularizer: serialize(this.betaRegularizer),
      gammaRegularizer: serialize(this.gammaRegularizer),
      betaConstraint: serialize(this.betaConstraint),
      gammaConstraint: serialize(this.gammaConstraint),
    };
    return {...super.getConfig(), ...config};
  }
}

/** A weight `buildStatistics` adds: its name, and `scalar` for shape [] instead of [channels]. */
export interface StatisticWeight {
  name: string;
  scalar?: boolean;
}

/** A weight a saved layer holds (see `NormalizationLayer.savedWeights`). */
export interface SavedWeight {
  name: string;
  /** Shape [] instead of [channels]. */
  scalar: boolean;
  /** Values must be >= 0 (a variance or standard deviation). */
  nonNegative: boolean;
}

/**
 * Checks a value for a layer weight: dtype, shape, finite values, and >= 0 when
 * `nonNegative`. `where` names the layer and weight. Shared by the layers (on
 * write) and model-file validation (on raw bytes), so both say the same thing.
 */
export function checkWeightValue(where: string, dtype: string, shape: readonly number[],
    value: {dtype: string; shape: readonly number[]; values: () => ArrayLike<number>}, nonNegative: boolean): void {
  if (value.dtype !== dtype) {
    throw new Error(`${where} must have dtype ${dtype}; received ${value.dtype}.`);
  }
  if (!tf.util.arraysEqual(value.shape as number[], shape as number[])) {
    throw new Error(`${where} must have shape ${describeShape(shape)}; received ${describeShape(value.shape)}.`);
  }
  const values = value.values();
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]) || (nonNegative && values[i] < 0)) {
      throw new Error(`${where} holds ${values[i]} at index ${i}; expected finite values` +
          `${nonNegative ? ' >= 0 (a variance or standard deviation)' : ''}.`);
    }
  }
}

function describeShape(shape: tfl.Shape | readonly number[]): string {
  return `[${shape.map((d) => d == null ? 'null' : d).join(', ')}]`;
}

/** Rejects keys no class in the hierarchy declares, and non-object configs. */
function checkFields(cls: Function, args: unknown): LayerArgs {
  const className = (cls as typeof NormalizationLayer).className ?? cls.name;
  if (args == null || typeof args !== 'object' || Array.isArray(args)) {
    throw new Error(`${className}: config must be an object; received ${args === null ? 'null' : typeof args}.`);
  }
  const allowed = new Set([...LAYER_FIELDS, ...(cls as typeof NormalizationLayer).configFields]);
  for (const key of Object.keys(args)) {
    if (!allowed.has(key)) {
      const name = typeof (args as LayerArgs).name === 'string' ? ` '${(args as LayerArgs).name}'` : '';
      throw new Error(`${className}${name}: unknown config field '${key}'; allowed fields are ` +
          `${[...allowed].join(', ')}. A subclass declares its own fields in static configFields.`);
    }
  }
  return args as LayerArgs;
}
