/** Factory functions in the tfjs style (`tf.layers.batchNormalization(args)`). */
import {BatchNormLayer, BatchNormLayerArgs} from './batch_norm';

/** A Keras-exact batch normalization layer. */
export function batchNorm(args?: BatchNormLayerArgs): BatchNormLayer {
  return new BatchNormLayer(args);
}
