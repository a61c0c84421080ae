/**
 * tfjs-normalization: Keras-compatible normalization layers for TensorFlow.js.
 * Importing this module registers every layer class with the tfjs
 * serialization registry, so saved models load with `tf.loadLayersModel`.
 */
// First: fails the import, before any layer registers, when tfjs is loaded twice or too old.
import './tfjs_check';
// Error classes, so callers can tell bad config from bad shapes without matching text.
export {NormalizationConfigError, NormalizationShapeError} from './errors';
export {
  NormalizationLayer, NormalizationLayerArgs, SavedWeight, StatisticWeight,
} from './layers/normalization_layer';
export {BatchNormLayer, BatchNormLayerArgs} from './layers/batch_norm';
export {BatchRenormLayer, BatchRenormLayerArgs, RenormClipping, RenormWarmup} from './layers/batch_renorm';
export {
  GroupNormLayer, GroupNormLayerArgs, AddonsGroupNormalization, AddonsInstanceNormalization,
} from './layers/group_norm';
export {batchNorm, batchRenorm, groupNorm, instanceNorm} from './layers/factories';
export {
  batchNormTraining, batchNormInference, channelScaleOffset, foldScaleOffset, BatchNormTrainingArgs,
  BatchNormTrainingResult, RenormArgs,
} from './kernels';
// The op behind GroupNormLayer; `groupNorm` is the layer factory, as `batchNorm` is.
export {groupNorm as groupNormOp, GroupNormArgs, GroupNormResult} from './kernels';
// Deployment tools.
export {foldBatchNorm, FoldResult} from './tools/fold';
export {recalibrateStatistics, CalibrationBatch, DatasetLike, RecalibrationResult} from './tools/recalibrate';
// Checking untrusted model files before tfjs builds anything.
export {checked, validateModelArtifacts} from './io/validate';
// Keras interop: importing registers Keras 3 InputLayer support; BatchNormalization aliasing is opt-in.
export {registerKerasAliases, unregisterKerasAliases, batchNormFromKerasConfig} from './tools/keras';
