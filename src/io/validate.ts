/**
 * Checks a model's artifacts before tfjs builds anything from them.
 *
 * `tf.loadLayersModel` builds the whole model first and checks weights after;
 * when a check fails there, tfjs-layers neither returns nor disposes the
 * partly built model and the decoded weights, so every failed load leaks
 * tensors. `validateModelArtifacts` reads only the manifest, the topology and
 * raw bytes (no tensors), so a broken or hostile file fails with nothing
 * allocated:
 *  - the manifest: each shape a list of non-negative safe integers, a
 *    supported dtype, and weightData exactly as long as the declared sizes add
 *    up to (sizes are computed, never allocated);
 *  - each layer of a NormalizationLayer class (found in the tfjs class
 *    registry, so the Addons aliases and an aliased Keras BatchNormalization
 *    count), at any depth of nested models: the weights the layer builds
 *    (`NormalizationLayer.savedWeights`), float32, per-channel weights of one
 *    shape [C] (scalars []), values finite and >= 0 where the layer requires
 *    it (the layers' own check, `checkWeightValue`);
 *  - a weight the layer's class does not declare is an error only for classes
 *    whose weights are known: this package's own, and a subclass that declares
 *    its own `statisticWeights` or `savedWeights`. A user's subclass that adds
 *    a weight in `buildStatistics` without declaring it is not refused: its
 *    undeclared float32 weights are checked for finite values only (tfjs
 *    checks their shapes when it writes them);
 *  - Keras 3 files (keras_version 3.x) get the manifest checks only: their
 *    weight names are variable paths until `fromKeras` rewrites them, and
 *    `fromKeras` checks the rewritten artifacts.
 *
 * Browser-safe (no `fs`): `checked(handler)` wraps any IOHandler, e.g.
 * `tf.io.fromMemory` or `tf.io.browserFiles`; `fileSystem` validates on its own.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BatchNormLayer} from '../layers/batch_norm';
import {BatchRenormLayer} from '../layers/batch_renorm';
import {AddonsGroupNormalization, AddonsInstanceNormalization, GroupNormLayer} from '../layers/group_norm';
import {KerasContribInstanceNormalization} from '../layers/keras_contrib';
import {checkWeightValue, NormalizationLayer} from '../layers/normalization_layer';
import {KerasBatchNormalization} from '../tools/keras';
import {resolveAxis} from '../kernels/view';
import {registeredClass} from '../tfjs_internals';

type Json = Record<string, unknown>;

/** Bytes per stored value, by dtype (a quantized weight is stored in its quantization dtype). */
const BYTES: Record<string, number> = {float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2};

/** A manifest entry with its place in weightData. */
interface Located {
  spec: tf.io.WeightsManifestEntry;
  offset: number;
  bytes: number;
}

/** Throws an Error naming the weight, or the layer and weight, at the first problem; allocates no tensor. */
export function validateModelArtifacts(artifacts: tf.io.ModelArtifacts): void {
  const data = new tf.io.CompositeArrayBuffer(artifacts.weightData ?? []);
  const weights = locate(artifacts.weightSpecs ?? [], data);
  const topology = artifacts.modelTopology;
  if (topology == null || topology instanceof ArrayBuffer) return;
  // Keras 3 weight names are variable paths, not tfjs's: fromKeras checks the layers after rewriting them.
  if (isKeras3Topology(topology)) return;
  const byName = new Map(weights.map((w) => [w.spec.name, w]));
  for (const layer of modelLayers(topology as Json)) checkLayer(layer, byName, data);
}

/**
 * The distinct class names of NormalizationLayer layers (this package's and
 * subclasses of it) in a topology, nested models included: what a process
 * must have registered, by importing this package, to load the model.
 */
export function normalizationClassNames(topology: unknown): string[] {
  if (topology == null || typeof topology !== 'object' || topology instanceof ArrayBuffer) return [];
  const names = modelLayers(topology as Json).map((l) => l.class_name)
      .filter((c): c is string => normalizationClass(c) != null);
  return [...new Set(names)];
}

/** Whether a model.json's topology was written by Keras 3 (keras_version 3.x; see src/tools/keras3.ts). */
export function isKeras3Topology(topology: unknown): boolean {
  const version = (topology as Json | null)?.keras_version;
  return typeof version === 'string' && /^3\./.test(version);
}

/** Wraps an IOHandler so that `load()` runs `validateModelArtifacts` before tfjs builds the model. */
export function checked(handler: tf.io.IOHandler): tf.io.IOHandler {
  if (handler == null || typeof handler.load !== 'function') {
    throw new Error('checked: expected an IOHandler with a load() method, such as tf.io.fromMemory(...).');
  }
  const wrapped: tf.io.IOHandler = {
    load: async () => {
      const artifacts = await handler.load!();
      validateModelArtifacts(artifacts);
      return artifacts;
    },
  };
  if (handler.save != null) wrapped.save = (artifacts) => handler.save!(artifacts);
  return wrapped;
}

/** Offsets and sizes of the manifest's weights; checks shapes, dtypes and the total length. */
function locate(specs: tf.io.WeightsManifestEntry[], data: tf.io.CompositeArrayBuffer): Located[] {
  // CompositeArrayBuffer leaves byteLength undefined when it holds no buffer.
  const available = data.byteLength ?? 0;
  if (!Array.isArray(specs)) throw new Error('Model weights: the weight specs must be a list.');
  const located: Located[] = [];
  let offset = 0;
  for (const spec of specs) {
    const where = `weight ${JSON.stringify(spec?.name)}`;
    if (typeof spec?.name !== 'string') throw new Error(`Model weights: ${where} has no name.`);
    if (!Array.isArray(spec.shape) || !spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`Model weights: ${where} has shape ${JSON.stringify(spec.shape)}; expected a list of ` +
          'non-negative integers.');
    }
    const stored = spec.quantization?.dtype ?? spec.dtype;
    const string = stored === 'string' && spec.quantization == null;
    if (!string && (!Object.prototype.hasOwnProperty.call(BYTES, stored) ||
        (spec.quantization != null && spec.dtype !== 'float32'))) {
      throw new Error(`Model weights: ${where} has dtype ${JSON.stringify(spec.dtype)}` +
          `${spec.quantization != null ? ` quantized as ${JSON.stringify(stored)}` : ''}; expected one of ` +
          `float32, int32, bool, complex64, string (float32 may be quantized as uint8, uint16 or float16).`);
    }
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const bytes = string ? stringBytes(data, offset, size) : size * BYTES[stored];
    if (offset + bytes > available) {
      throw new Error(`Model weights: ${where} of shape [${spec.shape.join(', ')}] needs bytes ${offset} to ` +
          `${offset + bytes}, but the weight data holds only ${available} bytes (truncated?).`);
    }
    located.push({spec, offset, bytes});
    offset += bytes;
  }
  if (offset !== available) {
    throw new Error(`Model weights: the weight data holds ${available} bytes but the manifest declares ` +
        `${offset} (from another model?).`);
  }
  return located;
}

/** Bytes of `count` strings stored from `offset` (each a uint32 length, then its bytes); Infinity when cut short. */
function stringBytes(data: tf.io.CompositeArrayBuffer, offset: number, count: number): number {
  let end = offset;
  for (let i = 0; i < count; i++) {
    if (end + 4 > data.byteLength) return Infinity;
    end += 4 + new DataView(data.slice(end, end + 4)).getUint32(0, true);
  }
  return end - offset;
}

/**
 * The layer configs of a Sequential or functional model (tfjs writes the model
 * itself; Keras wraps it in model_config), with the layers of nested models.
 */
function modelLayers(topology: Json): Json[] {
  const model = (topology.model_config ?? topology) as Json;
  const config = model?.config as Json | Json[] | undefined;
  const layers = Array.isArray(config) ? config : config?.layers;
  if (!Array.isArray(layers)) return [];
  return layers.filter((l): l is Json => l != null && typeof l === 'object')
      .flatMap((l) => [l, ...modelLayers(l)]);
}

// Classes whose saved weights are exactly what `savedWeights` says.
const KNOWN_CLASSES: ReadonlySet<Function> = new Set([
  BatchNormLayer, BatchRenormLayer, GroupNormLayer, AddonsGroupNormalization, AddonsInstanceNormalization,
  KerasBatchNormalization, KerasContribInstanceNormalization,
]);

/** Whether every weight a layer of `cls` saves is declared (see the module comment). */
function declaresAllWeights(cls: typeof NormalizationLayer): boolean {
  return KNOWN_CLASSES.has(cls) || Object.prototype.hasOwnProperty.call(cls, 'statisticWeights') ||
      Object.prototype.hasOwnProperty.call(cls, 'savedWeights');
}

/** The registered class of a layer entry when it is one of this package's (own keys only: `constructor` is no class). */
function normalizationClass(className: unknown): typeof NormalizationLayer | null {
  const entry = typeof className === 'string' ? registeredClass(className) : undefined;
  if (entry == null) return null;
  const cls = entry[0] as unknown as typeof NormalizationLayer;
  return cls.prototype instanceof NormalizationLayer ? cls : null;
}

function checkLayer(layer: Json, byName: Map<string, Located>, data: tf.io.CompositeArrayBuffer): void {
  const cls = normalizationClass(layer.class_name);
  const config = (layer.config ?? {}) as Json;
  // A built tf.keras ghost-batch layer as saved ([1, ..., C] weights): checked after fromKeras rewrites it,
  // and refused by the layer's fromConfig, naming fromKeras, if loaded without it.
  if (layer.class_name === 'BatchNormalization' && config.virtual_batch_size != null && Array.isArray(config.axis)) {
    return;
  }
  if (cls == null) {
    if (layer.class_name === 'BatchNormalization' && config.renorm === true) {
      // tfjs's built-in layer ignores renorm and has no variables for its three extra weights.
      throw new Error(`BatchNormalization '${String(config.name)}' has renorm: true, which tfjs's built-in ` +
          'BatchNormalization does not compute (and it has no moving_stddev, renorm_mean, renorm_stddev); call ' +
          'registerKerasAliases() from tfjs-normalization before loading, so that it loads as BatchRenormLayer.');
    }
    return;
  }
  const name = String(config.name ?? layer.name);
  const describe = `${layer.class_name} '${name}'`;
  const expected = cls.savedWeights(config);
  const prefix = `${name}/`;
  const strict = declaresAllWeights(cls);
  for (const [weightName, located] of byName) {
    // `norm/x/kernel` belongs to a layer named `norm/x`, not to `norm`.
    if (!weightName.startsWith(prefix) || weightName.includes('/', prefix.length) ||
        expected.some((w) => prefix + w.name === weightName)) {
      continue;
    }
    if (strict) {
      throw new Error(`${describe}: the weights hold '${weightName}', which this layer does not have; it has ` +
          `${expected.map((w) => w.name).join(', ')}.`);
    }
    const {spec, offset, bytes} = located;
    if (spec.dtype === 'float32') {
      checkWeightValue(`${describe}: weight '${weightName.slice(prefix.length)}'`, 'float32', spec.shape,
          {dtype: spec.dtype, shape: spec.shape, values: () => floats(spec, data.slice(offset, offset + bytes))},
          false);
    }
  }
  const found = expected.map((w) => {
    const located = byName.get(prefix + w.name);
    if (located == null) throw new Error(`${describe}: weight '${w.name}' is missing from the weights.`);
    return {...w, ...located};
  });
  // Every per-channel weight has shape [channels]: from the layer's input shape when its config
  // declares one, else the first rank-1 weight's.
  const perChannel = found.filter((w) => !w.scalar);
  const channels = declaredChannels(config) ?? perChannel.find((w) => w.spec.shape.length === 1)?.spec.shape;
  if (perChannel.length > 0 && channels == null) {
    throw new Error(`${describe}: weight '${perChannel[0].name}' must have shape [channels]; received ` +
        `[${perChannel[0].spec.shape.join(', ')}].`);
  }
  for (const {name: weight, scalar, nonNegative, spec, offset, bytes} of found) {
    checkWeightValue(`${describe}: weight '${weight}'`, 'float32', scalar ? [] : channels!,
        {dtype: spec.dtype, shape: spec.shape, values: () => floats(spec, data.slice(offset, offset + bytes))},
        nonNegative);
  }
}

/** [channels] from the input shape in the layer's config (tfjs and tf.keras: batch_input_shape, Keras 3: batch_shape). */
function declaredChannels(config: Json): number[] | undefined {
  const shape = config.batch_input_shape ?? config.batch_shape;
  // keras-contrib's InstanceNormalization with axis null has weights of shape [1].
  if (config.axis === null) return undefined;
  // Keras writes the axis as a one-element list.
  const axis = Array.isArray(config.axis) && config.axis.length === 1 ? config.axis[0] : config.axis ?? -1;
  if (!Array.isArray(shape) || typeof axis !== 'number') return undefined;
  const resolved = resolveAxis(axis, shape.length);
  if (resolved == null) return undefined;
  const size = shape[resolved];
  return Number.isSafeInteger(size) && size > 0 ? [size] : undefined;
}

/** A float32 weight's values, read (and dequantized) from its bytes. */
function floats(spec: tf.io.WeightsManifestEntry, bytes: ArrayBuffer): ArrayLike<number> {
  const q = spec.quantization;
  if (q == null) return new Float32Array(bytes);
  if (q.dtype === 'float16') return Array.from(new Uint16Array(bytes), half);
  const scale = q.scale ?? 1;
  const min = q.min ?? 0;
  return Array.from(q.dtype === 'uint8' ? new Uint8Array(bytes) : new Uint16Array(bytes), (v) => v * scale + min);
}

/** IEEE half-precision bits to a number. */
function half(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (exponent === 0 ? mantissa * 2 ** -24 : (1 + mantissa / 1024) * 2 ** (exponent - 15));
}
