/**
 * Loading models converted from Python Keras (tensorflowjs_converter
 * layers-model format).
 *
 * On import (no opt-in needed, because nothing changes for tfjs's own files):
 *  - GroupNormalization, Addons>GroupNormalization and Addons>InstanceNormalization
 *    load as GroupNormLayer (registered by src/layers/group_norm.ts);
 *  - keras-contrib's InstanceNormalization loads as
 *    KerasContribInstanceNormalization (src/layers/keras_contrib.ts).
 *
 * Keras 3 files (Keras 3's `batch_shape`, DTypePolicy objects, `{args,
 * kwargs}` nodes, variable-path weight names) load through the opt-in
 * `fromKeras(handler)` / `loadKerasModel(url)` of src/tools/keras3.ts, which
 * rewrites the artifacts; importing changes no tfjs class.
 *
 * Opt-in, `registerKerasAliases()`: the class name `BatchNormalization` (which
 * tfjs's built-in layer owns) builds this package's layers instead:
 * BatchRenormLayer for `renorm: true` (seven weights), BatchNormLayer
 * otherwise. Keras-only keys are translated or refused with a reason:
 *  - axis as a one-element list ([3]) → that axis; several axes → error;
 *  - fused → ignored. Inference reads the stored moving variance, so loading
 *    is exact; note that tf.keras's fused kernel (4-D input, e.g. Conv2D → BN)
 *    stores the Bessel-corrected variance while BatchNormLayer keeps the biased
 *    one in further training (pass unbiasedVariance: true to a layer you build
 *    yourself to continue the fused behaviour);
 *  - synchronized → accepted: one device means the same statistics;
 *  - renorm, renorm_clipping, renorm_momentum → BatchRenormLayer;
 *  - virtual_batch_size (ghost batch normalization) → virtualBatchSize. A
 *    built tf.keras 2.x layer with it saves its axis shifted by one (build
 *    inserts the ghost axis at index 1 and adds 1 to each axis, so a [B, C]
 *    input saves axis [2]) and its weights with shape [1, 1, C]-like
 *    (tf_keras/layers/normalization/batch_normalization.py v2.17.0, lines
 *    412-425; keras-team/tf-keras#546: Keras cannot load such a file itself).
 *    Such a file loads through `fromKeras`, whose `kerasGhostArtifacts` step
 *    shifts the axis list back and reshapes the weights to [C]; here an axis
 *    list with virtual_batch_size (an unconverted file) is an error naming it;
 *  - adjustment → error (Keras never serializes it; a config carrying one was
 *    edited by hand and its function cannot be honoured).
 * `unregisterKerasAliases()` restores tfjs's own BatchNormalization.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BatchNormLayer, BatchNormLayerArgs} from '../layers/batch_norm';
import {BatchRenormLayer} from '../layers/batch_renorm';
import {configError} from '../layers/config';
import type {SavedWeight} from '../layers/normalization_layer';
import {builtinBatchNormalization} from './batch_stats';

type Config = tf.serialization.ConfigDict;
type Registered = tf.serialization.SerializableConstructor<tf.serialization.Serializable>;

const KERAS_ONLY = ['fused', 'synchronized', 'virtualBatchSize', 'adjustment', 'renorm', 'renormClipping', 'renormMomentum'];

/** Keras 3 writes `dtype` as a DTypePolicy object; tfjs wants the name. */
function dtypeName(dtype: unknown): unknown {
  if (dtype != null && typeof dtype === 'object' && !Array.isArray(dtype)) {
    const config = (dtype as {config?: {name?: unknown}}).config;
    if (typeof config?.name === 'string') return config.name;
  }
  return dtype;
}

/**
 * Builds this package's layer from a Keras BatchNormalization config (keys
 * already camelCased by the tfjs loader).
 */
export function batchNormFromKerasConfig(config: Config): BatchNormLayer {
  const layer = `BatchNormalization '${config.name ?? '(unnamed)'}'`;
  const args: Config = {};
  for (const [key, value] of Object.entries(config)) {
    if (!KERAS_ONLY.includes(key)) args[key] = value;
  }
  if (config.dtype != null) args.dtype = dtypeName(config.dtype) as Config[string];
  if (Array.isArray(config.axis)) {
    if (config.axis.length !== 1) {
      throw configError(layer, 'axis', config.axis, 'this package normalizes over one channel axis; ' +
          'a Keras BatchNormalization over several axes cannot be loaded');
    }
    args.axis = config.axis[0];
  }
  if (config.virtualBatchSize != null) {
    args.virtualBatchSize = config.virtualBatchSize;
    if (Array.isArray(config.axis)) throw unconvertedGhostLayer(layer, config.axis);
  }
  if (config.adjustment != null) {
    throw configError(layer, 'adjustment', config.adjustment, 'an adjustment function cannot be honoured ' +
        '(Keras never serializes it); remove the key, or build the layer in code');
  }
  for (const key of ['fused', 'synchronized', 'renorm']) {
    if (config[key] != null && typeof config[key] !== 'boolean') {
      throw configError(layer, key, config[key], 'expected true, false or null');
    }
  }
  if (config.renorm === true) {
    return new BatchRenormLayer({
      ...args as BatchNormLayerArgs,
      renormClipping: (config.renormClipping ?? {}) as {},
      renormMomentum: (config.renormMomentum ?? 0.99) as number,
    });
  }
  return new BatchNormLayer(args as BatchNormLayerArgs);
}

/**
 * A built tf.keras 2.x BatchNormalization with `virtual_batch_size` saves its
 * axis as a list shifted past the ghost axis its build inserts at 1 (`[4]`
 * for a [B, H, W, C] input) and its weights in that broadcast shape
 * ([1, 1, 1, 1, C]; tf_keras/layers/normalization/batch_normalization.py,
 * `build`, see ../kernels/ghost_batch_norm.ts). tfjs writes weights by shape, so
 * such a file loads only after `kerasGhostArtifacts` (run by `fromKeras` /
 * `loadKerasModel`) has rewritten it.
 */
export function unconvertedGhostLayer(layer: string, axis: unknown): Error {
  return configError(layer, 'axis', axis, 'a built tf.keras layer with virtual_batch_size saves its axis shifted ' +
      'past the ghost axis and its weights as [1, ..., C]; load the model through fromKeras(handler) or ' +
      'loadKerasModel(url) from tfjs-normalization, which rewrite both (the weight bytes are the same)');
}

/**
 * Artifacts with every ghost-batch BatchNormalization of a tf.keras 2.x file
 * (`virtual_batch_size` set, `axis` a one-element list) rewritten to what
 * `BatchNormLayer` builds: the axis of the layer's input (the saved one − 1)
 * and per-channel weights of shape [C] instead of Keras's [1, ..., C, ...]
 * (the same bytes, so only the manifest changes). Pure: returns new artifacts
 * and leaves other layers as they are.
 */
export function kerasGhostArtifacts(artifacts: tf.io.ModelArtifacts): tf.io.ModelArtifacts {
  const topology = artifacts.modelTopology as Record<string, unknown> | null | undefined;
  if (topology == null || topology instanceof ArrayBuffer || typeof topology !== 'object') return artifacts;
  const shiftedAxis = new Map<string, number>();
  const rewrite = (entry: unknown): unknown => {
    if (entry == null || typeof entry !== 'object' || Array.isArray(entry)) return entry;
    const {class_name: className, config} = entry as {class_name?: unknown; config?: Record<string, unknown>};
    if (config == null || typeof config !== 'object') return entry;
    if (Array.isArray(config.layers)) return {...entry, config: {...config, layers: config.layers.map(rewrite)}};
    const axis = config.axis;
    if (className !== 'BatchNormalization' || config.virtual_batch_size == null || !Array.isArray(axis) ||
        axis.length !== 1 || !Number.isInteger(axis[0]) || axis[0] < 2) {
      return entry;
    }
    shiftedAxis.set(String(config.name), axis[0]);
    return {...entry, config: {...config, axis: axis[0] - 1}};
  };
  const modelConfig = rewrite(topology.model_config);
  if (shiftedAxis.size === 0) return artifacts;
  const weightSpecs = artifacts.weightSpecs?.map((spec) => {
    const slash = spec.name.lastIndexOf('/');
    const shifted = shiftedAxis.get(spec.name.slice(0, slash));
    const keras = shifted != null && spec.shape.length === shifted + 1 &&
        spec.shape.every((size, i) => i === shifted || size === 1);
    return keras ? {...spec, shape: [spec.shape[shifted!]]} : spec;
  });
  return {...artifacts, modelTopology: {...topology, model_config: modelConfig}, weightSpecs};
}

/** Registered under `BatchNormalization` by `registerKerasAliases`. */
export class KerasBatchNormalization extends BatchNormLayer {
  static override className = 'BatchNormalization';

  /** The weights of the layer `fromConfig` builds: BatchRenormLayer's for `renorm: true`. */
  static override savedWeights(config: Record<string, unknown>): SavedWeight[] {
    return (config.renorm === true ? BatchRenormLayer : BatchNormLayer).savedWeights(config);
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
      _cls: tf.serialization.SerializableConstructor<T>, config: Config): T {
    return batchNormFromKerasConfig(config) as unknown as T;
  }
}

/** Loads Keras BatchNormalization configs as BatchNormLayer / BatchRenormLayer (see the module comment). */
export function registerKerasAliases(): void {
  tf.serialization.registerClass(KerasBatchNormalization);
}

/** Puts tfjs's own BatchNormalization back under its name. */
export function unregisterKerasAliases(): void {
  tf.serialization.registerClass(builtinBatchNormalization as unknown as Registered);
}
