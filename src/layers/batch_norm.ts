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
 *  - a training batch with one value per channel is an error, not garbage;
 *  - `virtualBatchSize`: tf.keras 2.x's ghost batch normalization (./ghost_batch.ts).
 *
 * Reference: S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep
 * Network Training by Reducing Internal Covariate Shift", ICML 2015.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNormInference, batchNormTraining, BatchNormTrainingResult, RenormArgs} from '../kernels/batch_norm';
import {checkBoolean, checkNumber, Identifier, Initializer, resolveInitializer, serialize} from './config';
import {ghostBatchNormTraining, ghostValuesPerChannel, kerasGhostParamShape} from './ghost_batch';
import {NormalizationLayer, NormalizationLayerArgs, StatisticWeight} from './normalization_layer';

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
   * Ghost batch normalization (Hoffer et al. 2017), tf.keras 2.x's
   * `virtual_batch_size`: in training, normalize each ghost batch of this many
   * samples with its own statistics; ghost batch j of a batch of B holds the
   * samples i with i % (B/v) == j, as Keras's reshape to [v, B/v, ...] makes
   * them. The moving statistics follow the ghost means and variances averaged
   * over the ghost batches (so does `unbiasedVariance`, with m the values per
   * channel in one ghost batch). Inference does not depend on it. A positive
   * integer that must divide every training batch size (an error otherwise,
   * as in Keras), or null. Default null (the whole batch).
   */
  virtualBatchSize?: number | null;
}

export class BatchNormLayer extends NormalizationLayer {
  static override className = 'BatchNormLayer';
  static override configFields: readonly string[] = [
    ...NormalizationLayer.configFields,
    'momentum', 'movingMeanInitializer', 'movingVarianceInitializer', 'unbiasedVariance', 'virtualBatchSize',
  ];
  static override nonNegativeWeights: readonly string[] = ['moving_variance'];

  protected static override statisticWeights(_config: Record<string, unknown>): StatisticWeight[] {
    return [{name: 'moving_mean'}, {name: 'moving_variance'}];
  }

  readonly momentum: number;
  readonly unbiasedVariance: boolean;
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

  protected override normalize(x: tf.Tensor, training: boolean): tf.Tensor {
    if (!training) {
      return batchNormInference(x, this.movingMean.read() as tf.Tensor1D,
          this.movingVariance.read() as tf.Tensor1D, this.gammaValue(), this.betaValue(),
          this.channelAxis, this.epsilon);
    }
    const count = this.valuesPerChannel(x);
    // With ghost batches the statistics are per ghost batch: checked before anything runs.
    const statisticsCount = this.virtualBatchSize == null ? count :
      ghostValuesPerChannel(this.describeLayer(), x.shape, this.channelAxis, this.virtualBatchSize);
    const batch = this.normalizeBatch(x);
    this.updateStatistics(batch, statisticsCount);
    return batch.y;
  }

  /** Training forward pass with the batch's own statistics. Subclasses change the formula here. */
  protected normalizeBatch(x: tf.Tensor): BatchNormTrainingResult {
    return this.batchTraining(x);
  }

  /** The training op: over the whole batch, or per ghost batch with `virtualBatchSize`. */
  protected batchTraining(x: tf.Tensor, renorm?: RenormArgs): BatchNormTrainingResult {
    const args = {axis: this.channelAxis, epsilon: this.epsilon, renorm};
    return this.virtualBatchSize == null ? batchNormTraining(x, this.gammaValue(), this.betaValue(), args) :
      ghostBatchNormTraining(x, this.gammaValue(), this.betaValue(), {...args, virtualBatchSize: this.virtualBatchSize});
  }

  /**
   * With `virtualBatchSize`, a per-channel weight written from outside may also
   * have the shape a built tf.keras layer with virtual batches saves
   * (`kerasGhostParamShape`, e.g. [1, 1, C]), so converted files load as they are.
   */
  protected override savedWeightValue(value: tf.Tensor): tf.Tensor {
    if (this.virtualBatchSize == null || this.inputSpec == null) return value;
    const rank = this.inputSpec[0].ndim!;
    const channels = this.inputSpec[0].axes![this.channelAxis];
    const keras = kerasGhostParamShape(rank, this.channelAxis, channels);
    return tf.util.arraysEqual(value.shape, keras) ? tf.reshape(value, [channels]) : value;
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

  /** Values per channel in a batch; training needs at least two. */
  protected valuesPerChannel(x: tf.Tensor): number {
    const count = x.size / x.shape[this.channelAxis];
    if (count < 2) {
      throw new Error(`${this.describeLayer()}: training needs more than one value per channel to compute ` +
          `batch statistics; received input shape [${x.shape.join(', ')}] (${count} value per channel). ` +
          `Train with a batch of 2 or more, call the layer with training false, or use GroupNormLayer.`);
    }
    return count;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      momentum: this.momentum,
      movingMeanInitializer: serialize(this.movingMeanInitializer),
      movingVarianceInitializer: serialize(this.movingVarianceInitializer),
      unbiasedVariance: this.unbiasedVariance,
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
