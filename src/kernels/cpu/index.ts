/**
 * Fused kernels for the cpu backend, registered on import. Each replaces a
 * chain of tfjs ops (many full-size passes, reductions over outer axes run as
 * transpose + reduce) with two or three float64-accumulating loops:
 * ./layout.ts (how a tensor is walked), ./moments.ts (statistics),
 * ./forward.ts (output passes), ./gradient.ts (backward passes); backend
 * storage through ../../tfjs_internals.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import {batchNormTrainingConfig, batchRenormTrainingConfig, ghostBatchNormTrainingConfig} from './batch_norm_training';
import {batchNormTrainingGradConfig} from './batch_norm_training_grad';
import {channelScaleOffsetConfig} from './channel_scale_offset';
import {groupNormConfig} from './group_norm';
import {groupNormGradConfig} from './group_norm_grad';

for (const config of [batchNormTrainingConfig, batchRenormTrainingConfig, ghostBatchNormTrainingConfig, batchNormTrainingGradConfig,
  channelScaleOffsetConfig, groupNormConfig, groupNormGradConfig]) {
  tf.registerKernel(config);
}
