/** Factory functions in the tfjs style (`tf.layers.batchNormalization(args)`). */
import {BatchNormLayer, BatchNormLayerArgs} from './batch_norm';
import {BatchRenormLayer, BatchRenormLayerArgs} from './batch_renorm';
import {GroupNormLayer, GroupNormLayerArgs} from './group_norm';

/** A Keras-exact batch normalization layer. */
export function batchNorm(args?: BatchNormLayerArgs): BatchNormLayer {
  return new BatchNormLayer(args);
}

/** Batch Renormalization with Keras's semantics (`BatchNormalization(renorm=True)`). */
export function batchRenorm(args?: BatchRenormLayerArgs): BatchRenormLayer {
  return new BatchRenormLayer(args);
}

/** Group normalization, Keras's `GroupNormalization`. */
export function groupNorm(args?: GroupNormLayerArgs): GroupNormLayer {
  return new GroupNormLayer(args);
}

/** Instance normalization: group normalization with one group per channel. */
export function instanceNorm(args: Omit<GroupNormLayerArgs, 'groups'> = {}): GroupNormLayer {
  if ((args as GroupNormLayerArgs).groups != null) {
    throw new Error(`instanceNorm: groups is always -1 (one group per channel); received groups ` +
        `${(args as GroupNormLayerArgs).groups}. Use groupNorm to choose the number of groups.`);
  }
  return new GroupNormLayer({...args, groups: -1});
}
