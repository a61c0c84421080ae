/**
 * Training rules tfjs's training loop does not apply by itself, applied to
 * every NormalizationLayer in a model (nested models included):
 *
 *  - Frozen containers (TF2 Keras): a layer inside a model whose `trainable`
 *    is false runs in inference mode and keeps its statistics fixed. tfjs's
 *    container setter only flips the `trainable` flags of its direct layers'
 *    weights, so the layers cannot see a freeze two levels up, made before they
 *    were built, or of a layer without gamma and beta; `markFrozenLayers` walks
 *    the model tree and tells each layer.
 *  - Constraints (Keras): gammaConstraint/betaConstraint hold after every
 *    optimizer update. tfjs applies a constraint only in `LayerVariable.write`,
 *    which the optimizers never call; `applyConstraints` projects the weights.
 *
 * `NormalizationTrainingCallback` does both around every step of `fit` and
 * `fitDataset`: it is registered with tfjs-layers' public
 * `registerCallbackConstructor` at verbosity 0, so tfjs creates one for every
 * `fit` and `fitDataset` call whatever its `verbose`, before the user's
 * callbacks (a user's `onBatchEnd` sees constrained weights). `trainOnBatch`
 * and custom loops run no callbacks: see the functions below.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import {NormalizationLayer} from './normalization_layer';

/**
 * Tells every NormalizationLayer in `model` (nested models included) whether a
 * container above it is frozen (`trainable` false), so that it runs in
 * inference mode with fixed statistics, as in TF2 Keras. `fit` and
 * `fitDataset` do this at every step and clear it at the end. Before
 * `trainOnBatch` or a custom training loop, call it when the freeze is one the
 * layers cannot see from their weights' flags (a model frozen two levels up,
 * frozen before it was built, or a layer without gamma and beta), and again
 * after every change of `trainable`; `clearFrozenLayers` ends it.
 */
export function markFrozenLayers(model: tfl.layers.Layer): void {
  visit(model, false, (layer, frozen) => { layer.frozenByContainer = frozen; });
}

/** Ends what `markFrozenLayers` set: each layer decides from its own and its weights' flags again. */
export function clearFrozenLayers(model: tfl.layers.Layer): void {
  visit(model, false, (layer) => { layer.frozenByContainer = null; });
}

/**
 * Projects gamma and beta of every NormalizationLayer in `model` onto their
 * constraints (`gammaConstraint`, `betaConstraint`), as Keras does after each
 * optimizer update. `fit` and `fitDataset` do this after every batch; call it
 * after `trainOnBatch` or an optimizer step of a custom loop when you read the
 * weights before the next training call (each training call projects weights
 * an update changed before it computes, see `NormalizationLayer.applyConstraints`).
 */
export function applyConstraints(model: tfl.layers.Layer): void {
  visit(model, false, (layer) => layer.applyConstraints());
}

/** The `fit`/`fitDataset` callback applying the rules above; tfjs creates it, users need not. */
export class NormalizationTrainingCallback extends tfl.Callback {
  override async onTrainBegin(): Promise<void> {
    markFrozenLayers(this.model);
  }

  // A user's callback may freeze or unfreeze a model between steps.
  override async onBatchBegin(): Promise<void> {
    markFrozenLayers(this.model);
  }

  override async onBatchEnd(): Promise<void> {
    applyConstraints(this.model);
  }

  override async onTrainEnd(): Promise<void> {
    clearFrozenLayers(this.model);
  }
}
tfl.registerCallbackConstructor(0, NormalizationTrainingCallback);

/** Calls `action` on every NormalizationLayer under `layer`, with whether a container above it is frozen. */
function visit(layer: tfl.layers.Layer, frozenAbove: boolean,
    action: (layer: NormalizationLayer, frozen: boolean) => void): void {
  if (layer instanceof NormalizationLayer) {
    action(layer, frozenAbove);
    return;
  }
  const children = (layer as {layers?: unknown}).layers;
  if (!Array.isArray(children)) return;
  const frozen = frozenAbove || !layer.trainable;
  for (const child of children as tfl.layers.Layer[]) visit(child, frozen, action);
}
