/**
 * One view of every layer that keeps batch statistics for inference (this
 * package's BatchNormLayer and BatchRenormLayer, and tfjs's built-in
 * BatchNormalization), so the deployment tools treat them alike.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import {resolveAxis} from '../kernels/view';
import {BatchNormLayer} from '../layers/batch_norm';
import {registeredClass} from '../tfjs_internals';

type LayerClass = new (...args: never[]) => tfl.layers.Layer;

/**
 * tfjs's own BatchNormalization class, read from the registry when this module
 * loads (before `registerKerasAliases` can put another class under its name).
 */
export const builtinBatchNormalization: LayerClass = registeredClass('BatchNormalization')![0] as unknown as LayerClass;

export interface BatchStatistics {
  layer: tfl.layers.Layer;
  /** The channel axis, non-negative. */
  axis: number;
  epsilon: number;
  gamma: tfl.LayerVariable | null;
  beta: tfl.LayerVariable | null;
  movingMean: tfl.LayerVariable;
  movingVariance: tfl.LayerVariable;
  /** BatchRenormLayer only: kept equal to √(moving variance + ε). */
  movingStddev: tfl.LayerVariable | null;
}

export function isBatchStatisticsLayer(layer: tfl.layers.Layer): boolean {
  return layer instanceof BatchNormLayer || layer instanceof builtinBatchNormalization;
}

/** The statistics of a built batch-statistics layer, or null for any other layer. */
export function batchStatistics(layer: tfl.layers.Layer): BatchStatistics | null {
  if (!isBatchStatisticsLayer(layer)) return null;
  if (!layer.built) throw new Error(`${layer.getClassName()} '${layer.name}': the layer is not built; build the model first.`);
  const config = layer.getConfig();
  const rank = layer.inputSpec?.[0]?.ndim;
  if (rank == null) throw new Error(`${layer.getClassName()} '${layer.name}': the input rank is unknown.`);
  const axis = resolveAxis(config.axis as number, rank);
  if (axis == null) {
    throw new Error(`${layer.getClassName()} '${layer.name}': axis ${config.axis} is not an axis of its rank-${rank} input.`);
  }
  const weight = (name: string) => layer.weights.find((w) => w.originalName.endsWith(`/${name}`)) ?? null;
  return {
    layer,
    axis,
    epsilon: config.epsilon as number,
    gamma: weight('gamma'),
    beta: weight('beta'),
    movingMean: weight('moving_mean')!,
    movingVariance: weight('moving_variance')!,
    movingStddev: weight('moving_stddev'),
  };
}
