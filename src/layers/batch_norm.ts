/**
 * BatchNormLayer: Keras-exact batch normalization (Ioffe & Szegedy 2015).
 *
 * Training (`training: true`, as `fit`/`trainOnBatch` pass it, and the layer
 * trainable): normalize with the batch mean and biased variance,
 *   y = γ·(x − μ_B)/√(σ²_B + ε) + β,
 * then update `moving = momentum·moving + (1 − momentum)·batch`.
 * Inference: the same with the moving statistics.
 *
 * Differences from tfjs's built-in `tf.layers.batchNormalization`:
 *  - `trainable: false` freezes the statistics and uses them (TF2 Keras);
 *  - `center: false` / `scale: false` work in training;
 *  - `unbiasedVariance: true` stores the Bessel-corrected variance m/(m−1)·σ²_B;
 *  - a training batch with one value per channel (batch of one sample without
 *    spatial axes, often the last partial batch of an epoch: 33 = 2·16 + 1) is
 *    normalized with the moving statistics and leaves them unchanged, where
 *    tfjs's built-in layer and Keras output β and pull the moving variance
 *    toward 0; `throwOnSingleValueBatch: true` makes it an error instead
 *    (PyTorch raises too);
 *  - with a mask (`Masking`, `Embedding({maskZero: true})`) the training
 *    statistics cover the unmasked positions only, as in Keras 3; the mask
 *    must have the input's shape without the channel axis, dtype bool
 *    (../kernels/masked_moments.ts);
 *  - `virtualBatchSize`: tf.keras 2.x's ghost batch normalization (../kernels/ghost_batch_norm.ts).
 *
 * Reference: S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep
 * Network Training by Reducing Internal Covariate Shift", ICML 2015.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNormInference, BatchNormTrainingResult, foldScaleOffset, RenormArgs} from '../kernels/batch_norm';
import {checkMask, maskedBatchNormTraining, unmaskedCount} from '../kernels/masked_moments';
import {NormalizationConfigError} from '../errors';
import {checkBoolean, checkNumber, Identifier, Initializer, resolveInitializer, serialize} from './config';
import {ghostBatchNormTraining, ghostValuesPerChannel} from '../kernels/ghost_batch_norm';
import {InferenceScaleOffset, NormalizationLayer, NormalizationLayerArgs, StatisticWeight} from './normalization_layer';

export interface BatchNormLayerArgs extends NormalizationLayerArgs {
  /** Weight of the old value in the moving averages, in [0, 1]. Default 0.99 (PyTorch's 0.1 is 1 − 0.9). */
  momentum?: number;
  /** Initializer for the moving mean. Default 'zeros'. */
  movingMeanInitializer?: Identifier<Initializer>;
  /** Initializer for the moving variance. Default 'ones'. */
  movingVarianceInitializer?: Identifier<Initializer>;
  /**
   * Update the moving variance with the unbiased batch variance m/(m−1)·σ²_B
   * (m = values per channel in the batch), the population estimate PyTorch
   * keeps. Normalization always uses the biased variance. Default false (Keras).
   */
  unbiasedVariance?: boolean;
  /**
   * Throw on a training batch with one value per channel (a batch of one sample
   * without spatial axes) instead of normalizing it with the moving statistics
   * and leaving them unchanged. Default false.
   */
  throwOnSingleValueBatch?: boolean;
  /**
   * Ghost batch normalization (Hoffer et al. 2017), tf.keras 2.x's
   * `virtual_batch_size`: in training, normalize each ghost batch of this many
   * samples with its own statistics; ghost batch j of a batch of B holds the
   * samples i with i % (B/v) == j, as Keras's reshape to [v, B/v, ...] makes
   * them. The moving statistics follow the ghost means and variances averaged
   * over the ghost batches (so does `unbiasedVariance`, with m the values per
   * channel in one ghost batch). Inference does not depend on it. A positive
   * integer that must divide every training batch size (an error otherwise,
   * as in Keras), or null. Not combined with masks. Default null (the whole batch).
   */
  virtualBatchSize?: number | null;
}

export class BatchNormLayer extends NormalizationLayer {
  static override className = 'BatchNormLayer';
  static override configFields: readonly string[] = [
    ...NormalizationLayer.configFields,
    'momentum', 'movingMeanInitializer', 'movingVarianceInitializer', 'unbiasedVariance', 'throwOnSingleValueBatch',
    'virtualBatchSize',
  ];
  static override nonNegativeWeights: readonly string[] = ['moving_variance'];

  protected static override statisticWeights(_config: Record<string, unknown>): StatisticWeight[] {
    return [{name: 'moving_mean'}, {name: 'moving_variance'}];
  }

  readonly momentum: number;
  readonly unbiasedVariance: boolean;
  readonly throwOnSingleValueBatch: boolean;
  readonly virtualBatchSize: number | null;
  protected readonly movingMeanInitializer: Initializer;
  protected readonly movingVarianceInitializer: Initializer;
  movingMean!: tfl.LayerVariable;
  movingVariance!: tfl.LayerVariable;

  constructor(args: BatchNormLayerArgs = {}) {
    super(args);
    const name = this.describeLayer();
    this.momentum = checkNumber(name, 'momentum', args.momentum ?? 0.99, {min: 0, max: 1});
    this.unbiasedVariance = checkBoolean(name, 'unbiasedVariance', args.unbiasedVariance ?? false);
    this.throwOnSingleValueBatch =
        checkBoolean(name, 'throwOnSingleValueBatch', args.throwOnSingleValueBatch ?? false);
    this.virtualBatchSize = args.virtualBatchSize == null ? null :
      checkNumber(name, 'virtualBatchSize', args.virtualBatchSize, {integer: true, min: 1});
    this.movingMeanInitializer =
        resolveInitializer(name, 'movingMeanInitializer', args.movingMeanInitializer, 'zeros');
    this.movingVarianceInitializer =
        resolveInitializer(name, 'movingVarianceInitializer', args.movingVarianceInitializer, 'ones');
  }

  protected override buildStatistics(_inputShape: tfl.Shape, channels: number): void {
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', this.movingMeanInitializer,
        undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [channels], 'float32',
        this.movingVarianceInitializer, undefined, false);
  }

  protected override normalize(x: tf.Tensor, training: boolean, mask: tf.Tensor | null): tf.Tensor {
    if (mask != null) checkMask(this.describeLayer(), mask, x.shape, this.channelAxis);
    // Values per channel behind the batch statistics: with a mask, the unmasked positions (one scalar read).
    const count = training && mask != null ? unmaskedCount(mask) : x.size / x.shape[this.channelAxis];
    // Fewer than two values per channel have no batch variance: inference, statistics unchanged (or the opt-in error).
    if (training && count < 2) {
      if (this.throwOnSingleValueBatch) throw this.singleValueBatchError(x, mask != null ? count : null);
      training = false;
    }
    if (!training) {
      return batchNormInference(x, this.movingMean.read() as tf.Tensor1D,
          this.movingVariance.read() as tf.Tensor1D, this.gammaValue(), this.betaValue(),
          this.channelAxis, this.epsilon);
    }
    // With ghost batches the statistics are per ghost batch: checked before anything runs.
    const statisticsCount = this.virtualBatchSize == null ? count : this.ghostValuesPerChannel(x, mask);
    const batch = this.normalizeBatch(x, mask);
    this.updateStatistics(batch, statisticsCount);
    return batch.y;
  }

  /** Inference is y = x·scale + offset with scale = γ/√(moving variance + ε), offset = β − moving mean·scale. */
  override inferenceScaleOffset(): InferenceScaleOffset {
    return foldScaleOffset(this.movingMean.read() as tf.Tensor1D, this.movingVariance.read() as tf.Tensor1D,
        this.gammaValue(), this.betaValue(), this.epsilon);
  }

  /**
   * Training forward pass with the batch's own statistics, over the unmasked
   * positions when `mask` is given. Subclasses change the formula here.
   */
  protected normalizeBatch(x: tf.Tensor, mask: tf.Tensor | null): BatchNormTrainingResult {
    return this.batchTraining(x, mask);
  }

  /** The training op: over the (unmasked) batch, or per ghost batch with `virtualBatchSize`. */
  protected batchTraining(x: tf.Tensor, mask: tf.Tensor | null, renorm?: RenormArgs): BatchNormTrainingResult {
    const args = {axis: this.channelAxis, epsilon: this.epsilon, renorm};
    // The statistics only feed the moving averages: nothing differentiates them.
    return this.virtualBatchSize == null ?
      maskedBatchNormTraining(x, this.gammaValue(), this.betaValue(), {...args, statisticsGradients: false}, mask) :
      ghostBatchNormTraining(x, this.gammaValue(), this.betaValue(), {...args, virtualBatchSize: this.virtualBatchSize});
  }

  /** Values per channel in one ghost batch; throws for a batch v does not divide, or with a mask. */
  private ghostValuesPerChannel(x: tf.Tensor, mask: tf.Tensor | null): number {
    const name = this.describeLayer();
    if (mask != null) {
      throw new NormalizationConfigError(name, 'virtualBatchSize', this.virtualBatchSize,
          `${name}: virtualBatchSize ${this.virtualBatchSize} cannot be combined with a mask (tf.keras 2.x has ` +
          'no masked batch statistics and Keras 3 no virtual batches); remove the mask or virtualBatchSize.');
    }
    return ghostValuesPerChannel(name, x.shape, this.channelAxis, this.virtualBatchSize!);
  }

  /** Moving-average update of the statistics after a training step. */
  protected updateStatistics(batch: BatchNormTrainingResult, count: number): void {
    movingAverage(this.movingMean, batch.mean, this.momentum);
    movingAverage(this.movingVariance, this.populationVariance(batch, count), this.momentum);
  }

  /** The batch variance the moving statistics follow: σ²_B (Keras) or, with `unbiasedVariance`, m/(m−1)·σ²_B. */
  protected populationVariance(batch: BatchNormTrainingResult, count: number): tf.Tensor1D {
    return this.unbiasedVariance ? tf.mul(batch.variance, count / (count - 1)) : batch.variance;
  }

  /** The opt-in error for a training batch without a batch variance; `unmasked` is the mask's count, if any. */
  private singleValueBatchError(x: tf.Tensor, unmasked: number | null): Error {
    if (unmasked != null) {
      return new Error(`${this.describeLayer()}: a masked training batch of input shape [${x.shape.join(', ')}] ` +
          `has ${unmasked} unmasked value${unmasked === 1 ? '' : 's'} per channel, so it has no batch variance, and ` +
          `throwOnSingleValueBatch is true. Set throwOnSingleValueBatch to false (that batch then uses the moving ` +
          `statistics and leaves them unchanged), or batch sequences so that at least two positions are unmasked.`);
    }
    return new Error(`${this.describeLayer()}: a training batch of input shape [${x.shape.join(', ')}] holds ` +
        `one value per channel, a batch of one sample, so it has no batch variance, and throwOnSingleValueBatch ` +
        `is true. With fit this is usually the last partial batch of an epoch: a dataset of k·batchSize + 1 ` +
        `samples (33 = 2·16 + 1) ends each epoch with one sample. Remedies: set throwOnSingleValueBatch to ` +
        `false (that batch then uses the moving statistics and leaves them unchanged), drop or add a sample so ` +
        `the dataset size is not k·batchSize + 1, train with batches of 2 or more, or use GroupNormLayer.`);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      momentum: this.momentum,
      movingMeanInitializer: serialize(this.movingMeanInitializer),
      movingVarianceInitializer: serialize(this.movingVarianceInitializer),
      unbiasedVariance: this.unbiasedVariance,
      throwOnSingleValueBatch: this.throwOnSingleValueBatch,
      // Only when set, as Keras writes it.
      ...(this.virtualBatchSize == null ? {} : {virtualBatchSize: this.virtualBatchSize}),
    };
  }
}
tf.serialization.registerClass(BatchNormLayer);

/** variable ← momentum·variable + (1 − momentum)·value. */
export function movingAverage(variable: tfl.LayerVariable, value: tf.Tensor, momentum: number): void {
  tf.tidy(() => {
    variable.write(tf.add(tf.mul(variable.read(), momentum), tf.mul(value, 1 - momentum)));
  });
}
