/**
 * tfjs-normalization: Keras-compatible normalization layers for TensorFlow.js.
 * Importing this module registers every layer class with the tfjs
 * serialization registry, so saved models load with `tf.loadLayersModel`.
 */
// First: fails the import, before any layer registers, when tfjs is loaded twice or too old.
import './tfjs_check';
// Error classes, so callers can tell bad config from bad shapes without matching text.
export {NormalizationConfigError, NormalizationShapeError} from './errors';
// The base class and what a variant of your own needs (docs/extending.md).
export {
  checkWeightValue, InferenceScaleOffset, NormalizationLayer, NormalizationLayerArgs, SavedWeight, StatisticWeight,
} from './layers/normalization_layer';
export {BatchNormLayer, BatchNormLayerArgs, movingAverage} from './layers/batch_norm';
export {BatchRenormLayer, BatchRenormLayerArgs, RenormClipping, RenormWarmup} from './layers/batch_renorm';
export {
  GroupNormLayer, GroupNormLayerArgs, AddonsGroupNormalization, AddonsInstanceNormalization,
} from './layers/group_norm';
export {
  KerasContribInstanceNormalization, KerasContribInstanceNormalizationArgs,
} from './layers/keras_contrib';
export {batchNorm, batchRenorm, groupNorm, instanceNorm} from './layers/factories';
// Frozen containers and constraints in training; importing registers the fit/fitDataset callback.
export {
  applyConstraints, clearFrozenLayers, markFrozenLayers, NormalizationTrainingCallback,
} from './layers/training_hooks';
export {
  batchNormTraining, batchNormInference, channelScaleOffset, foldScaleOffset, BatchNormTrainingArgs,
  BatchNormTrainingResult, RenormArgs, ghostBatchNormTraining, GhostBatchNormArgs,
} from './kernels';
// The op behind GroupNormLayer; `groupNorm` is the layer factory, as `batchNorm` is.
export {groupNorm as groupNormOp, GroupNormArgs, GroupNormResult} from './kernels';
// Deployment tools.
export {foldBatchNorm, FoldResult} from './tools/fold';
export {recalibrateStatistics, CalibrationBatch, DatasetLike, RecalibrationResult} from './tools/recalibrate';
// In Node, file:// without tfjs-normalization/node fails naming that entry (nothing in browsers).
import './io/file_url_hint';
// Checking untrusted model files before tfjs builds anything.
export {checked, validateModelArtifacts} from './io/validate';
// Keras interop: BatchNormalization aliasing and Keras 3 files are opt-in; importing changes no tfjs class.
export {registerKerasAliases, unregisterKerasAliases, batchNormFromKerasConfig, kerasGhostArtifacts} from './tools/keras';
export {fromKeras, kerasArtifacts, loadKerasModel} from './tools/keras3';
