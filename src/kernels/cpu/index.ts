/**
 * Fused kernels for the cpu backend, registered on import. Each replaces a
 * chain of tfjs ops (many full-size passes, reductions over outer axes run as
 * transpose + reduce) with two or three float64-accumulating loops.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchNormTrainingConfig} from './batch_norm_training';
import {batchNormTrainingGradConfig} from './batch_norm_training_grad';
import {channelScaleOffsetConfig} from './channel_scale_offset';
import {groupNormConfig} from './group_norm';
import {groupNormGradConfig} from './group_norm_grad';

for (const config of [batchNormTrainingConfig, batchNormTrainingGradConfig, channelScaleOffsetConfig,
  groupNormConfig, groupNormGradConfig]) {
  tf.registerKernel(config);
}
