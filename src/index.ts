/**
 * tfjs-normalization: Keras-compatible normalization layers for TensorFlow.js.
 * Importing this module registers every layer class with the tfjs
 * serialization registry, so saved models load with `tf.loadLayersModel`.
 */
export {NormalizationLayer, NormalizationLayerArgs} from './layers/normalization_layer';
export {BatchNormLayer, BatchNormLayerArgs} from './layers/batch_norm';
export {batchNorm} from './layers/factories';
export {
  batchNormTraining, batchNormInference, channelScaleOffset, foldScaleOffset, BatchNormTrainingArgs,
  BatchNormTrainingResult, RenormArgs,
} from './kernels';
