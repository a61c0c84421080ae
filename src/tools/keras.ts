/**
 * Loading models converted from Python Keras (tensorflowjs_converter
 * layers-model format).
 *
 * On import (no opt-in needed, because nothing changes for tfjs's own files):
 *  - GroupNormalization, Addons>GroupNormalization and Addons>InstanceNormalization
 *    load as GroupNormLayer (registered by src/layers/group_norm.ts);
 *  - InputLayer also accepts Keras 3's `batch_shape` (tf.keras 2.x and tfjs
 *    write `batch_input_shape`) and a Keras 3 DTypePolicy object as `dtype`,
 *    so Keras 3 Sequential models load at all.
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
 *    An axis list, which only build writes, is shifted back; the layer accepts
 *    the Keras weight shape (BatchNormLayer.savedWeightValue);
 *  - adjustment → error (Keras never serializes it; a config carrying one was
 *    edited by hand and its function cannot be honoured).
 * `unregisterKerasAliases()` restores tfjs's own BatchNormalization.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
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
    // Keras's build turns the axis into a list and shifts it past the ghost axis it inserts at 1.
    if (Array.isArray(config.axis)) {
      const shifted = config.axis[0];
      if (typeof shifted !== 'number' || !Number.isInteger(shifted) || shifted < 2) {
        throw configError(layer, 'axis', config.axis, 'with virtual_batch_size, a built tf.keras layer saves ' +
            'its axis shifted by one past the ghost axis, so it is an integer >= 2');
      }
      args.axis = shifted - 1;
    }
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

// tfjs's InputLayer, as registered before this module loads.
const tfjsInputLayer = tf.serialization.SerializationMap.getMap().classNameMap['InputLayer'][0] as
    unknown as typeof tfl.layers.Layer;

/** tfjs's InputLayer, also reading Keras 3's `batch_shape` and DTypePolicy `dtype`. */
class KerasInputLayer extends (tfjsInputLayer as unknown as new (args: Config) => tfl.layers.Layer) {
  static className = 'InputLayer';

  constructor(args: Config) {
    const {batchShape, ...rest} = args;
    if (batchShape != null && rest.batchInputShape == null && rest.inputShape == null) {
      if (!Array.isArray(batchShape)) throw configError('InputLayer', 'batch_shape', batchShape, 'expected a list');
      rest.batchInputShape = batchShape;
    }
    if (rest.dtype != null) rest.dtype = dtypeName(rest.dtype) as Config[string];
    super(rest);
  }
}
tf.serialization.registerClass(KerasInputLayer as unknown as Registered);
