/**
 * foldBatchNorm: merge inference-mode batch normalization into the linear
 * layer before it, for deployment.
 *
 * A BN layer computes y = z·s + o per channel with s = γ/√(σ²+ε) and
 * o = β − μ·s (moving statistics). When z = x·W + b comes straight from a
 * Dense, Conv2D or DepthwiseConv2D with linear activation, and nothing else
 * reads z, then y = x·(W·s) + (b·s + o): the BN disappears into the kernel
 * and bias (a bias is added if the layer had none).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {foldScaleOffset} from '../kernels/batch_norm';
import {NormalizationLayer} from '../layers/normalization_layer';
import {BatchStatistics, batchStatistics, isBatchStatisticsLayer} from './batch_stats';

export interface FoldResult {
  /** A new model for inference; the original is untouched. */
  model: tfl.LayersModel;
  /** Names of the normalization layers folded away. */
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

/** Returns a new model with every foldable batch normalization merged into the layer before it. */
export function foldBatchNorm(model: tfl.LayersModel): FoldResult {
  if (!(model instanceof tfl.LayersModel)) {
    throw new Error('foldBatchNorm: expected a tf.LayersModel (tf.sequential or tf.model).');
  }
  const sequential = model instanceof tfl.Sequential;
  const config = model.getConfig() as Config & {layers: LayerEntry[]; outputLayers?: NodeRef[]};
  const entries = config.layers;
  const nameOf = (e: LayerEntry) => (e.name ?? e.config.name) as string;
  const folds = new Map<string, {into: string; stats: BatchStatistics}>();
  const kept: FoldResult['kept'] = [];

  entries.forEach((entry, index) => {
    const layer = model.getLayer(nameOf(entry));
    if (layer instanceof tfl.LayersModel) {
      for (const inner of layer.layers.filter((l) => isBatchStatisticsLayer(l) || l instanceof NormalizationLayer)) {
        kept.push({name: inner.name, reason: `it is inside the nested model '${layer.name}'; fold that model on its own`});
      }
      return;
    }
    if (!isBatchStatisticsLayer(layer)) {
      if (layer instanceof NormalizationLayer) {
        kept.push({name: layer.name, reason: `${layer.getClassName()} uses per-sample statistics, which no kernel can absorb`});
      }
      return;
    }
    const stats = batchStatistics(layer)!;
    const source = sequential ? sequentialSource(entries, index) : functionalSource(entries, entry, config.outputLayers ?? []);
    const reason = 'reason' in source ? source.reason : foldableReason(model.getLayer(source.layer), stats);
    if (reason != null) kept.push({name: layer.name, reason});
    else folds.set(layer.name, {into: (source as {layer: string}).layer, stats});
  });

  const folded = [...folds.keys()];
  const targets = new Map([...folds.values()].map((f) => [f.into, f.stats]));
  const rewired = entries.filter((e) => !folds.has(nameOf(e)));
  for (const entry of rewired) {
    if (targets.has(nameOf(entry))) entry.config.useBias = true;
    for (const node of entry.inboundNodes ?? []) node.forEach((ref) => redirect(ref, folds, entries));
  }
  (config.outputLayers ?? []).forEach((ref) => redirect(ref, folds, entries));
  config.layers = rewired;

  const cls = model.constructor as typeof tfl.LayersModel;
  const result = cls.fromConfig(cls, config) as tfl.LayersModel;
  for (const layer of result.layers) {
    const original = model.getLayer(layer.name);
    const stats = targets.get(layer.name);
    if (stats == null) {
      layer.setWeights(original.getWeights());
    } else {
      const weights = tf.tidy(() => foldedWeights(original, stats));
      layer.setWeights(weights);
      tf.dispose(weights);
    }
  }
  return {model: result, folded, kept};
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

/** Why `source` cannot absorb the BN described by `stats`, or null when it can. */
function foldableReason(source: tfl.layers.Layer, stats: BatchStatistics): string | null {
  const cls = source.getClassName();
  const config = source.getConfig();
  if (!FOLDABLE.includes(cls)) return `it follows '${source.name}' (${cls}), not a ${FOLDABLE.join(', ')} layer`;
  if (config.activation !== 'linear') {
    return `it follows '${source.name}' whose activation is ${config.activation}, not linear`;
  }
  const rank = stats.layer.inputSpec![0].ndim!;
  const channelAxis = cls === 'Dense' || config.dataFormat !== 'channelsFirst' ? rank - 1 : 1;
  if (stats.axis !== channelAxis) {
    return `it normalizes axis ${stats.axis}, but the channels of '${source.name}' are on axis ${channelAxis}`;
  }
  return null;
}

/** Points a reference to a folded BN at the layer it was folded into. */
function redirect(ref: NodeRef, folds: Map<string, {into: string}>, entries: LayerEntry[]): void {
  const fold = folds.get(ref[0]);
  if (fold == null) return;
  const bn = entries.find((e) => e.name === ref[0])!;
  const [, nodeIndex, tensorIndex] = bn.inboundNodes![0][0];
  ref[0] = fold.into;
  ref[1] = nodeIndex;
  ref[2] = tensorIndex;
}

/** [kernel·s, bias·s + o] with s, o the BN's inference scale and offset. */
function foldedWeights(source: tfl.layers.Layer, stats: BatchStatistics): tf.Tensor[] {
  const [kernel, bias] = source.getWeights();
  const read = (v: tfl.LayerVariable | null) => v == null ? null : v.read() as tf.Tensor1D;
  const {scale, offset} = foldScaleOffset(read(stats.movingMean)!, read(stats.movingVariance)!,
      read(stats.gamma), read(stats.beta), stats.epsilon);
  // DepthwiseConv2D kernels are [h, w, in, multiplier]; output channel i·multiplier + m.
  const kernelScale = source.getClassName() === 'DepthwiseConv2D' ?
      tf.reshape(scale, kernel.shape.slice(2)) : scale;
  const newBias = bias == null ? offset : tf.add(tf.mul(bias, scale), offset);
  return [tf.mul(kernel, kernelScale), newBias];
}
