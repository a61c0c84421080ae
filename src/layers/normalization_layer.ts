/**
 * NormalizationLayer: the shared base of every layer in this package, and the
 * class to extend for a variant of your own (docs/extending.md is the guide).
 *
 * It owns what all normalization layers have in common:
 *  - config parsing and validation (clear errors naming layer, field, value),
 *  - the channel axis (negative values, channels-first, any rank >= 2),
 *  - gamma/beta with their initializers, regularizers and constraints,
 *  - checked, all-or-nothing `setWeights`,
 *  - the shared `getConfig` keys,
 *  - the training/inference decision (`isTraining`).
 *
 * Extension points, in the order they run:
 *  - `static className` (each subclass its own) and `static configFields` (the
 *    config keys the subclass adds; unknown keys are rejected, so a typo such
 *    as `momentun` fails instead of being ignored);
 *  - `checkInputShape(inputShape, channels)`: validate shape-dependent config,
 *    before any weight exists; a failure leaves the layer unbuilt;
 *  - `buildStatistics(inputShape, channels)`: add the subclass's own weights
 *    (moving statistics) after gamma and beta. `static statisticWeights(config)`
 *    names those weights, so that a model file can be checked before anything
 *    is built (src/io/validate.ts);
 *  - `normalize(x, training, mask)`: the computation; runs inside `tf.tidy`;
 *    `mask` is the incoming mask or null;
 *  - `inferenceScaleOffset()`: the per-channel affine the layer computes in
 *    inference, or why there is none (read by `foldBatchNorm`);
 *  - `getConfig()`: call `super.getConfig()` and add the subclass's keys.
 * Register the subclass with `tf.serialization.registerClass(MyLayer)`.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {closest, distance} from 'fastest-levenshtein';
import {NormalizationConfigError, NormalizationShapeError} from '../errors';
import {forgetAddedWeights, type Kwargs, type LayerArgs} from '../tfjs_internals';
import {resolveAxis} from '../kernels/view';
import {
  checkBoolean, checkNumber, configError, Constraint, describe, Identifier, Initializer, Regularizer,
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
  /**
   * Constraint on beta, projected after each optimizer update as in Keras: by
   * `fit`/`fitDataset` after every step, otherwise at the start of the next
   * training call or by `applyConstraints(model)`. Default none.
   */
  betaConstraint?: Identifier<Constraint>;
  /** Constraint on gamma, projected as `betaConstraint` is. Default none. */
  gammaConstraint?: Identifier<Constraint>;
}

// Per-channel weights are allocated at build, before a model file's weights are
// read: a corrupt or hostile declared shape must not allocate gigabytes.
const MAX_CHANNELS = 2 ** 24;

// tfjs-layers' Layer keys a user sets, shown in errors and matched for typos.
const LAYER_FIELDS = ['name', 'trainable', 'dtype', 'inputShape', 'batchInputShape', 'batchSize'];
// Keys tfjs's Layer also accepts or its loader adds (`customObjects` goes into
// every config it deserializes): allowed, but not offered to a user.
const LAYER_INTERNAL_FIELDS = ['weights', 'inputDType', 'customObjects'];

/**
 * A layer's computation in inference as y = x·scale + offset per channel, or
 * why it is not one. `foldBatchNorm` folds the first kind into the layer
 * before it and keeps the second kind with `reason`.
 */
export type InferenceScaleOffset = {scale: tf.Tensor1D; offset: tf.Tensor1D} | {reason: string};

export abstract class NormalizationLayer extends tfl.layers.Layer {
  /**
   * The name the tfjs serialization registry stores the class under. Every
   * subclass sets its own: the constructor throws when a subclass inherits it,
   * since registering it would replace the parent's entry.
   */
  declare static className: string;
  /** Config keys this class accepts beyond tfjs's Layer keys. Subclasses extend the list. */
  static configFields: readonly string[] = [
    'axis', 'epsilon', 'center', 'scale', 'betaInitializer', 'gammaInitializer',
    'betaRegularizer', 'gammaRegularizer', 'betaConstraint', 'gammaConstraint',
  ];
  /** Weight names whose values must be >= 0 when set from outside (variances, standard deviations). */
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
  private resolvedChannelAxis: number | null = null;

  constructor(args: NormalizationLayerArgs = {}, defaultEpsilon = 1e-3) {
    super(checkFields(checkOwnClassName(new.target), args));
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

  /**
   * The channel axis resolved against the input rank (non-negative). Readable
   * from `checkInputShape` on; reading it earlier is an error.
   */
  protected get channelAxis(): number {
    if (this.resolvedChannelAxis == null) {
      throw new Error(`${this.describeLayer()}: the channel axis is known only once the layer is being built.`);
    }
    return this.resolvedChannelAxis;
  }

  /**
   * Checks the input shape, then creates gamma, beta and the subclass's
   * weights. A failure anywhere leaves the layer as if never built: no weights
   * in its lists, no input spec, and a later build with a good shape works.
   */
  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    if (Array.isArray(inputShape[0]) && inputShape.length !== 1) {
      throw new Error(`${this.describeLayer()}: expected one input, received ${inputShape.length}.`);
    }
    const rank = shape.length;
    const name = this.describeLayer();
    if (rank < 2) {
      throw new NormalizationShapeError(name, 'input',
          `${name}: input must have rank >= 2 (batch and channels); received shape ${describeShape(shape)}.`);
    }
    const axis = resolveAxis(this.axis, rank);
    if (axis == null || axis === 0) {
      throw configError(name, 'axis', this.axis,
          `for input shape ${describeShape(shape)} (rank ${rank}) the channel axis must be in ` +
          `[${-(rank - 1)}, ${rank - 1}] and not the batch axis 0`);
    }
    const channels = shape[axis];
    if (channels == null || !(channels > 0)) {
      throw new NormalizationShapeError(name, 'input', `${name}: the channel axis ${this.axis} of input shape ` +
          `${describeShape(shape)} must have a defined size; it is ${channels}.`);
    }
    if (channels > MAX_CHANNELS) {
      throw new NormalizationShapeError(name, 'input', `${name}: the channel axis ${this.axis} of input shape ` +
          `${describeShape(shape)} has ${channels} channels; at most ${MAX_CHANNELS} are supported.`);
    }
    this.resolvedChannelAxis = axis;
    const weightsBefore = this.weights.length;
    const lossesBefore = this.losses.length;
    try {
      this.checkInputShape(shape, channels);
      if (this.scale) {
        this.gamma = this.addWeight('gamma', [channels], 'float32', this.gammaInitializer,
            this.gammaRegularizer ?? undefined, true, this.gammaConstraint ?? undefined);
      }
      if (this.center) {
        this.beta = this.addWeight('beta', [channels], 'float32', this.betaInitializer,
            this.betaRegularizer ?? undefined, true, this.betaConstraint ?? undefined);
      }
      this.buildStatistics(shape, channels);
    } catch (e) {
      this.undoBuild(weightsBefore, lossesBefore);
      throw e;
    }
    this.inputSpec = [{ndim: rank, axes: {[axis]: channels}}];
    this.built = true;
  }

  /**
   * Safety net for a `buildStatistics` that throws after weights were added:
   * drops them from the weight lists (tfjs's public setters), disposes them,
   * and lets a retry add them again.
   */
  private undoBuild(weightsBefore: number, lossesBefore: number): void {
    const added = this.weights.slice(weightsBefore);
    if (added.length > 0) {
      this.trainableWeights = this.trainableWeights.filter((w) => !added.includes(w));
      this.nonTrainableWeights = this.nonTrainableWeights.filter((w) => !added.includes(w));
      forgetAddedWeights(this, added, lossesBefore);
      for (const weight of added) weight.dispose();
    }
    this.gamma = null;
    this.beta = null;
    this.resolvedChannelAxis = null;
  }

  /**
   * Extension point: reject an input shape the config cannot take (for
   * example GroupNorm's groups vs channels) before any weight is created.
   * `channelAxis` is resolved; throw a `NormalizationConfigError` naming the
   * field. May read config and `this.channelAxis`; must not create weights.
   */
  protected checkInputShape(_inputShape: tfl.Shape, _channels: number): void {}

  /**
   * Extension point: add weights beyond gamma/beta (moving statistics) with
   * `this.addWeight`, and declare them in `static statisticWeights`. Runs after
   * `checkInputShape` and after gamma and beta exist.
   */
  protected buildStatistics(_inputShape: tfl.Shape, _channels: number): void {}

  // ---- Training rules: frozen containers and constraints (see training_hooks.ts) ----

  /**
   * Whether a container above this layer is frozen (`trainable` false), as
   * `markFrozenLayers` found by walking the model tree (`fit` and `fitDataset`
   * walk it at every step); null when no walk is in force (outside `fit`, or
   * after `clearFrozenLayers`).
   */
  frozenByContainer: boolean | null = null;
  // False once a training call ran: an optimizer update of gamma/beta may follow, to be projected.
  private constraintsApplied = true;

  /**
   * The training decision: batch statistics only when the caller asks for
   * training (`model.fit` and `trainOnBatch` pass `training: true`) and the
   * layer is not frozen; frozen means inference mode with fixed statistics, as
   * in TF2 Keras. Frozen: the layer's `trainable` is false, or a container
   * above it is: `frozenByContainer` when a model-tree walk is in force,
   * otherwise gamma's or beta's `trainable` flag being false (tfjs's container
   * setter `model.trainable = false` flips only the flags of its direct
   * layers' weights).
   */
  protected isTraining(kwargs: Kwargs): boolean {
    const frozen = this.frozenByContainer ??
        [this.gamma, this.beta].some((weight) => weight != null && !weight.trainable);
    return kwargs != null && kwargs.training === true && this.trainable && !frozen;
  }

  /**
   * Projects gamma and beta onto `gammaConstraint` / `betaConstraint`, as Keras
   * does after each optimizer update (tfjs's optimizers skip constraints). The
   * `fit`/`fitDataset` callback calls it after every step; each training call
   * runs it first when a training call ran since the last projection, so every
   * computation sees constrained weights and each update is projected once.
   */
  applyConstraints(): void {
    this.constraintsApplied = true;
    if (this.gammaConstraint == null && this.betaConstraint == null) return;
    tf.tidy(() => {
      // LayerVariable.write applies the weight's own constraint once after writing.
      if (this.gamma != null && this.gammaConstraint != null) this.gamma.write(tf.clone(this.gamma.read()));
      if (this.beta != null && this.betaConstraint != null) this.beta.write(tf.clone(this.beta.read()));
    });
  }

  /** Before a training computation: project an update made since the last training call. */
  private projectBeforeTraining(): void {
    if (!this.constraintsApplied) this.applyConstraints();
    this.constraintsApplied = false;
  }

  // ---- End of training rules ----

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    if (Array.isArray(inputs) && inputs.length !== 1) {
      throw new Error(`${this.describeLayer()}: expected one input tensor, received ${inputs.length}.`);
    }
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (x.dtype !== 'float32') {
      throw new Error(`${this.describeLayer()}: input dtype must be float32; received ${x.dtype}.`);
    }
    const training = this.isTraining(kwargs);
    // tfjs passes the incoming mask (Masking, Embedding maskZero) as kwargs.mask, one per input.
    const masks = kwargs?.mask as tf.Tensor | tf.Tensor[] | null | undefined;
    const mask = (Array.isArray(masks) ? masks[0] : masks) ?? null;
    if (training) this.projectBeforeTraining();
    return tf.tidy(() => this.normalize(x, training, mask));
  }

  /**
   * Sets every weight, all or nothing: each value is checked first (dtype
   * float32, the weight's shape, finite values, >= 0 for the class's
   * `nonNegativeWeights`), and only then are they written, so a bad value
   * leaves every weight unchanged (as tfjs's own layers do for a wrong shape).
   * Reads each value once (`dataSync`).
   *
   * Not checked here: `LayerVariable.write` on a weight, `model.setWeights`
   * and `tf.loadLayersModel` (tfjs writes the variables directly); load
   * untrusted files through `checked()` or `fileSystem` (docs/security.md).
   * @throws NormalizationShapeError for a wrong count, shape or dtype; Error for a non-finite or negative value.
   */
  override setWeights(weights: tf.Tensor[]): void {
    const name = this.describeLayer();
    const params = this.weights;
    if (!Array.isArray(weights) || weights.length !== params.length) {
      throw new NormalizationShapeError(name, 'weights', `${name}: setWeights expects ${params.length} values ` +
          `(${params.map(weightName).join(', ') || 'no weights: build the layer first'}); ` +
          `received ${Array.isArray(weights) ? weights.length : typeof weights}.`);
    }
    const nonNegative = (this.constructor as typeof NormalizationLayer).nonNegativeWeights;
    params.forEach((param, i) => {
      const value = weights[i];
      if (!(value instanceof tf.Tensor)) {
        throw new NormalizationShapeError(name, weightName(param),
            `${name}: weight '${weightName(param)}' must be a tf.Tensor; received ${describe(value)}.`);
      }
      checkWeightValue(`${name}: weight '${weightName(param)}'`, param.dtype, param.shape as number[],
          {dtype: value.dtype, shape: value.shape, values: () => value.dataSync()},
          nonNegative.includes(weightName(param)));
    });
    super.setWeights(weights);
  }

  /**
   * Extension point: the computation. Runs inside `tf.tidy`. `mask` is the
   * incoming mask (null without one); it passes on to the next layer unchanged.
   */
  protected abstract normalize(x: tf.Tensor, training: boolean, mask: tf.Tensor | null): tf.Tensor;

  /**
   * Extension point: what the layer computes in inference as a per-channel
   * y = x·scale + offset (shapes [channels]), from its current weights, or
   * `{reason}` when it is not one. `foldBatchNorm` folds layers that return
   * scale and offset into the Dense/Conv2D/DepthwiseConv2D before them; the
   * caller disposes the tensors. The default gives a reason: override it in a
   * layer whose inference is a fixed per-channel affine (moving statistics).
   */
  inferenceScaleOffset(): InferenceScaleOffset {
    const className = (this.constructor as typeof NormalizationLayer).className;
    return {reason: `${className} does not give a per-channel inference scale and offset ` +
        '(NormalizationLayer.inferenceScaleOffset)'};
  }

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
 * `nonNegative`. `where` names the layer and weight (`BatchNormLayer 'bn':
 * weight 'moving_variance'`). Shared by `setWeights` and model-file validation
 * (on raw bytes), so both say the same thing.
 * @throws Error naming `where`, the expected and the received dtype, shape or value.
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

/** A weight's name without the layer scope: 'moving_mean' for 'bn/moving_mean'. */
function weightName(weight: tfl.LayerVariable): string {
  return weight.originalName.slice(weight.originalName.lastIndexOf('/') + 1);
}


/**
 * A subclass without its own `static className` would be saved, loaded and
 * registered under its parent's name, replacing the parent in tfjs's registry.
 */
function checkOwnClassName(cls: Function): Function {
  if (!Object.prototype.hasOwnProperty.call(cls, 'className')) {
    const inherited = (cls as typeof NormalizationLayer).className;
    throw new NormalizationConfigError(cls.name, 'className', inherited,
        `${cls.name}: the class has no static className of its own` +
        (inherited == null ? '' : ` (it inherits '${inherited}', so saving and registering it would replace ` +
            `${Object.getPrototypeOf(cls).name} in tfjs's serialization registry)`) +
        `. Add \`static className = '${cls.name}';\` to the class (\`static override className\` in ` +
        `TypeScript) and register it with ` +
        `tf.serialization.registerClass(${cls.name}).`);
  }
  return cls;
}

/** Rejects keys no class in the hierarchy declares, and non-object configs. */
function checkFields(cls: Function, args: unknown): LayerArgs {
  const {className, configFields} = cls as typeof NormalizationLayer;
  if (args == null || typeof args !== 'object' || Array.isArray(args)) {
    throw new NormalizationConfigError(className, 'config', args,
        `${className}: config must be an object; received ${Array.isArray(args) ? 'an array' : describe(args)}.`);
  }
  const offered = [...configFields, ...LAYER_FIELDS];
  const allowed = new Set([...offered, ...LAYER_INTERNAL_FIELDS]);
  for (const [key, value] of Object.entries(args)) {
    if (allowed.has(key)) continue;
    const name = typeof (args as LayerArgs).name === 'string' ? ` '${(args as LayerArgs).name}'` : '';
    const suggestion = closeField(key, offered);
    const hint = suggestion != null ? `did you mean '${suggestion}'?` :
        `${className} takes ${configFields.join(', ')}, and tfjs's Layer fields ${LAYER_FIELDS.join(', ')}.`;
    throw new NormalizationConfigError(`${className}${name}`, key, value,
        `${className}${name}: unknown config field '${key}'; ${hint}`);
  }
  return args as LayerArgs;
}

/**
 * The field `key` was probably meant to be: the nearest by edit distance,
 * ignoring case and underscores (so `moving_mean_initializer` finds
 * `movingMeanInitializer`), when at most a third of its letters differ.
 */
function closeField(key: string, fields: readonly string[]): string | null {
  const plain = (field: string) => field.toLowerCase().replace(/_/g, '');
  const byPlain = new Map(fields.map((f) => [plain(f), f]));
  const nearest = closest(plain(key), [...byPlain.keys()]);
  const limit = Math.max(1, Math.floor(plain(key).length / 3));
  return distance(plain(key), nearest) <= limit ? byPlain.get(nearest)! : null;
}
