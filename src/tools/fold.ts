/**
 * foldBatchNorm: merge inference-mode normalization into the linear layer
 * before it, for deployment.
 *
 * A layer that gives a per-channel inference affine y = z·s + o
 * (`NormalizationLayer.inferenceScaleOffset`: BatchNormLayer and
 * BatchRenormLayer with s = γ/√(σ²+ε) and o = β − μ·s from the moving
 * statistics, a user's variant that overrides it; and tfjs's built-in
 * BatchNormalization) is folded when z = x·W + b comes straight from a Dense,
 * Conv2D or DepthwiseConv2D with linear activation and nothing else reads z:
 * y = x·(W·s) + (b·s + o). The normalization disappears into the kernel and
 * bias (a bias is added if the layer had none).
 *
 * The merged layer takes the normalization layer's name, so every layer name
 * in the folded model still outputs what it did before (model output names
 * included); the linear layer's own name, whose output no longer exists,
 * disappears.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {NormalizationShapeError} from '../errors';
import {foldScaleOffset} from '../kernels/batch_norm';
import {NormalizationLayer} from '../layers/normalization_layer';
import {batchStatistics, isBatchStatisticsLayer} from './batch_stats';
import {resolveAxis} from '../kernels/view';

export interface FoldResult {
  /** A new model for inference; the original is untouched. */
  model: tfl.LayersModel;
  /** Names of the normalization layers folded away; each merged layer now carries that name. */
  folded: string[];
  /** Normalization layers kept, with the reason each could not be folded. */
  kept: Array<{name: string; reason: string}>;
}

const FOLDABLE = ['Dense', 'Conv2D', 'DepthwiseConv2D'];

type Config = tf.serialization.ConfigDict;
/** [layerName, nodeIndex, tensorIndex, kwargs?] as tfjs-layers writes inbound nodes and model outputs. */
type NodeRef = [string, number, number, ...unknown[]];
interface LayerEntry {
  name?: string;
  className: string;
  config: Config;
  inboundNodes?: NodeRef[][];
}

/** A normalization layer's inference as y = x·scale + offset along `axis` (non-negative) of a rank-`rank` input. */
interface ChannelAffine {
  scale: tf.Tensor1D;
  offset: tf.Tensor1D;
  axis: number;
  rank: number;
}

/** A layer folded away: the linear layer it merges into, and its affine. */
interface Fold {
  into: string;
  affine: ChannelAffine;
}

/**
 * Returns a new model with every foldable normalization merged into the layer
 * before it. Normalization layers inside a nested model are kept (fold that
 * model on its own).
 * @throws Error when `model` is not a LayersModel; NormalizationShapeError when a
 *   layer's `inferenceScaleOffset` returns tensors that are not of shape [channels].
 */
export function foldBatchNorm(model: tfl.LayersModel): FoldResult {
  if (!(model instanceof tfl.LayersModel)) {
    throw new Error('foldBatchNorm: expected a tf.LayersModel (tf.sequential or tf.model).');
  }
  const sequential = model instanceof tfl.Sequential;
  const config = model.getConfig() as Config & {layers: LayerEntry[]; outputLayers?: NodeRef[]};
  const entries = config.layers;
  const folds = new Map<string, Fold>();
  const kept: FoldResult['kept'] = [];
  try {
    entries.forEach((entry, index) => {
      const layer = model.getLayer(nameOf(entry));
      if (layer instanceof tfl.LayersModel) {
        for (const inner of layer.layers.filter(isNormalizationLayer)) {
          kept.push({name: inner.name, reason: `it is inside the nested model '${layer.name}'; fold that model on its own`});
        }
        return;
      }
      if (!isNormalizationLayer(layer)) return;
      const affine = inferenceAffine(layer);
      if ('reason' in affine) {
        kept.push({name: layer.name, reason: affine.reason});
        return;
      }
      const source = sequential ? sequentialSource(entries, index) :
          functionalSource(entries, entry, config.outputLayers ?? []);
      const reason = 'reason' in source ? source.reason : foldableReason(model.getLayer(source.layer), affine);
      if (reason != null) {
        kept.push({name: layer.name, reason});
        tf.dispose([affine.scale, affine.offset]);
      } else {
        folds.set(layer.name, {into: (source as {layer: string}).layer, affine});
      }
    });
    return {model: rebuild(model, config, folds), folded: [...folds.keys()], kept};
  } finally {
    for (const {affine} of folds.values()) tf.dispose([affine.scale, affine.offset]);
  }
}

const nameOf = (e: LayerEntry) => (e.name ?? e.config.name) as string;

function isNormalizationLayer(layer: tfl.layers.Layer): boolean {
  return layer instanceof NormalizationLayer || isBatchStatisticsLayer(layer);
}

/** The layer's inference affine (this package's layers ask the layer; tfjs's BatchNormalization its statistics). */
function inferenceAffine(layer: tfl.layers.Layer): ChannelAffine | {reason: string} {
  const rank = layer.inputSpec?.[0]?.ndim;
  if (!layer.built || rank == null) {
    throw new Error(`foldBatchNorm: ${layer.getClassName()} '${layer.name}' is not built; build the model first.`);
  }
  if (!(layer instanceof NormalizationLayer)) {
    const stats = batchStatistics(layer)!;
    const read = (v: tfl.LayerVariable | null) => v == null ? null : v.read() as tf.Tensor1D;
    const {scale, offset} = foldScaleOffset(read(stats.movingMean)!, read(stats.movingVariance)!,
        read(stats.gamma), read(stats.beta), stats.epsilon);
    return {scale, offset, axis: stats.axis, rank};
  }
  const result = tf.tidy(() => layer.inferenceScaleOffset());
  if ('reason' in result) return result;
  const axis = resolveAxis(layer.axis, rank)!;
  const channels = layer.inputSpec![0].axes?.[axis];
  for (const [field, value] of [['scale', result.scale], ['offset', result.offset]] as const) {
    if (value.rank !== 1 || value.shape[0] !== channels) {
      tf.dispose([result.scale, result.offset]);
      const owner = `${layer.getClassName()} '${layer.name}'`;
      throw new NormalizationShapeError(owner, field, `${owner}: inferenceScaleOffset returned ${field} of ` +
          `shape [${value.shape.join(', ')}]; expected [${channels}] (one value per channel).`);
    }
  }
  return {scale: result.scale, offset: result.offset, axis, rank};
}

/**
 * The folded model: each folded layer's entry removed, the linear layer before
 * it renamed after it (so references to it, model outputs included, stay
 * valid), and that layer's weights replaced by the merged ones.
 */
function rebuild(model: tfl.LayersModel, config: Config & {layers: LayerEntry[]; outputLayers?: NodeRef[]},
    folds: Map<string, Fold>): tfl.LayersModel {
  const entries = config.layers;
  // Merged layer name (the normalization layer's) → the linear layer it was.
  const mergedFrom = new Map([...folds].map(([name, fold]) => [name, fold.into]));
  const intoName = new Map([...folds].map(([name, fold]) => [fold.into, name]));
  const rewired = entries.filter((e) => !folds.has(nameOf(e)));
  for (const entry of rewired) {
    const merged = intoName.get(nameOf(entry));
    if (merged != null) {
      entry.config.useBias = true;
      entry.config.name = merged;
      if (entry.name != null) entry.name = merged;
    }
    for (const node of entry.inboundNodes ?? []) node.forEach((ref) => redirect(ref, folds, entries));
  }
  (config.outputLayers ?? []).forEach((ref) => redirect(ref, folds, entries));
  config.layers = rewired;

  const cls = model.constructor as typeof tfl.LayersModel;
  const result = cls.fromConfig(cls, config) as tfl.LayersModel;
  for (const layer of result.layers) {
    const original = model.getLayer(mergedFrom.get(layer.name) ?? layer.name);
    const fold = folds.get(layer.name);
    if (fold == null) {
      layer.setWeights(original.getWeights());
    } else {
      const weights = tf.tidy(() => foldedWeights(original, fold.affine));
      layer.setWeights(weights);
      tf.dispose(weights);
    }
  }
  return result;
}

type Source = {layer: string} | {reason: string};

/** The previous layer of a Sequential model, or why there is none to fold into. */
function sequentialSource(entries: LayerEntry[], index: number): Source {
  return index === 0 ? {reason: 'it reads the model input directly'} : {layer: entries[index - 1].config.name as string};
}

/** The single layer whose output feeds `entry`, if that output feeds nothing else; otherwise the reason. */
function functionalSource(entries: LayerEntry[], entry: LayerEntry, outputs: NodeRef[]): Source {
  const nodes = entry.inboundNodes ?? [];
  if (nodes.length !== 1) return {reason: `it is applied ${nodes.length} times (a shared layer)`};
  if (nodes[0].length !== 1) return {reason: 'it has more than one input'};
  const [source, nodeIndex, tensorIndex] = nodes[0][0];
  const producer = entries.find((e) => e.name === source)!;
  if (producer.className === 'InputLayer') return {reason: 'it reads the model input directly'};
  if ((producer.inboundNodes ?? []).length !== 1) {
    return {reason: `'${source}' is applied more than once (a shared layer)`};
  }
  const readers = [...entries.flatMap((e) => (e.inboundNodes ?? []).flat()), ...outputs]
      .filter(([name, n, t]) => name === source && n === nodeIndex && t === tensorIndex).length;
  if (readers !== 1) return {reason: `the output of '${source}' also feeds other layers or the model output`};
  return {layer: source};
}

/** Why `source` cannot absorb `affine`, or null when it can. */
function foldableReason(source: tfl.layers.Layer, affine: ChannelAffine): string | null {
  const cls = source.getClassName();
  const config = source.getConfig();
  if (!FOLDABLE.includes(cls)) return `it follows '${source.name}' (${cls}), not a ${FOLDABLE.join(', ')} layer`;
  if (config.activation !== 'linear') {
    return `it follows '${source.name}' whose activation is ${config.activation}, not linear`;
  }
  const channelAxis = cls === 'Dense' || config.dataFormat !== 'channelsFirst' ? affine.rank - 1 : 1;
  if (affine.axis !== channelAxis) {
    return `it normalizes axis ${affine.axis}, but the channels of '${source.name}' are on axis ${channelAxis}`;
  }
  return null;
}

/** Points a reference to a folded layer at the merged layer, which carries its name and the linear layer's node. */
function redirect(ref: NodeRef, folds: Map<string, Fold>, entries: LayerEntry[]): void {
  if (!folds.has(ref[0])) return;
  const folded = entries.find((e) => e.name === ref[0])!;
  const [, nodeIndex, tensorIndex] = folded.inboundNodes![0][0];
  ref[1] = nodeIndex;
  ref[2] = tensorIndex;
}

/** [kernel·s, bias·s + o] with s, o the normalization's inference scale and offset. */
function foldedWeights(source: tfl.layers.Layer, {scale, offset}: ChannelAffine): tf.Tensor[] {
  const [kernel, bias] = source.getWeights();
  // DepthwiseConv2D kernels are [h, w, in, multiplier]; output channel i·multiplier + m.
  const kernelScale = source.getClassName() === 'DepthwiseConv2D' ?
      tf.reshape(scale, kernel.shape.slice(2)) : scale;
  const newBias = bias == null ? offset : tf.add(tf.mul(bias, scale), offset);
  return [tf.mul(kernel, kernelScale), newBias];
}
