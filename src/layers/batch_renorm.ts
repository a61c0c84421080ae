/**
 * BatchRenormLayer: Batch Renormalization (Ioffe 2017) with Keras's semantics
 * (tf.keras 2.x `renorm=True`, Keras >= 3.14).
 *
 * What differs from BatchNormLayer, in training only:
 *  - the batch statistics are corrected toward slow renorm averages (μ_R, σ_R):
 *      s = max(σ_R, √ε), r = clip(σ_B/s, rmin, rmax), d = clip((μ_B − μ_R)/s, −dmax, dmax)
 *      y = γ·((x − μ_B)/σ_B·r + d) + β,   σ_B = √(σ²_B + ε),
 *    with r and d constants for the gradient and μ_R, σ_R taken before the update;
 *  - updates: μ_R, σ_R ← EMA(μ_B, σ_B) with `renormMomentum`; moving_mean and
 *    moving_stddev ← EMA(μ_B, σ_B) with `momentum`; moving_variance = max(moving_stddev² − ε, 0);
 *  - optionally the paper's warm-up of the clipping limits (renorm_clipping.ts).
 * Inference is BatchNormLayer's, with moving_mean and moving_variance. A
 * training batch with one value per channel follows BatchNormLayer's rule
 * (inference, every statistic and renorm_step unchanged, or the opt-in error).
 * With `virtualBatchSize`, r and d come from the ghost statistics averaged over
 * the ghost batches, as in tf.keras 2.x (../kernels/ghost_batch_norm.ts).
 *
 * Reference: S. Ioffe, "Batch Renormalization: Towards Reducing Minibatch
 * Dependence in Batch-Normalized Models", NeurIPS 2017.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type {BatchNormTrainingResult} from '../kernels/batch_norm';
import {BatchNormLayer, BatchNormLayerArgs, movingAverage} from './batch_norm';
import {checkNumber} from './config';
import type {StatisticWeight} from './normalization_layer';
import {
  checkRenormClipping, checkRenormWarmup, RenormClipping, renormLimits, RenormWarmup, warmupEnd,
} from './renorm_clipping';

export type {RenormClipping, RenormWarmup};

export interface BatchRenormLayerArgs extends BatchNormLayerArgs {
  /** Limits on r and d: `{rmax, rmin, dmax}`, each optional (missing = unclipped on that side). Default {}. */
  renormClipping?: RenormClipping;
  /** Weight of the old value in the renorm averages, in [0, 1]. Default 0.99. */
  renormMomentum?: number;
  /** The paper's warm-up of the clipping limits, in training steps. Default none. */
  renormWarmup?: RenormWarmup | null;
}

export class BatchRenormLayer extends BatchNormLayer {
  static override className = 'BatchRenormLayer';
  static override configFields: readonly string[] = [
    ...BatchNormLayer.configFields, 'renormClipping', 'renormMomentum', 'renormWarmup',
  ];
  static override nonNegativeWeights: readonly string[] = [
    ...BatchNormLayer.nonNegativeWeights, 'moving_stddev', 'renorm_stddev', 'renorm_step',
  ];

  protected static override statisticWeights(config: Record<string, unknown>): StatisticWeight[] {
    return [
      ...super.statisticWeights(config), {name: 'moving_stddev'}, {name: 'renorm_mean'}, {name: 'renorm_stddev'},
      ...(config.renorm_warmup == null ? [] : [{name: 'renorm_step', scalar: true}]),
    ];
  }

  readonly renormClipping: RenormClipping;
  readonly renormMomentum: number;
  readonly renormWarmup: RenormWarmup | null;
  movingStddev!: tfl.LayerVariable;
  renormMean!: tfl.LayerVariable;
  renormStddev!: tfl.LayerVariable;
  /** Training steps taken, saved with the model; only with a warm-up, and it stops at the warm-up's end. */
  renormStep: tfl.LayerVariable | null = null;

  constructor(args: BatchRenormLayerArgs = {}) {
    super(args);
    const name = this.describeLayer();
    this.renormClipping = checkRenormClipping(name, args.renormClipping);
    this.renormMomentum = checkNumber(name, 'renormMomentum', args.renormMomentum ?? 0.99, {min: 0, max: 1});
    this.renormWarmup = checkRenormWarmup(name, args.renormWarmup, this.renormClipping);
  }

  protected override buildStatistics(inputShape: tfl.Shape, channels: number): void {
    super.buildStatistics(inputShape, channels);
    // Both standard deviations start at √(initial moving variance), as in Keras.
    const stddev = (name: string) => {
      const w = this.addWeight(name, [channels], 'float32', tfl.initializers.ones(), undefined, false);
      tf.tidy(() => { w.write(tf.sqrt(this.movingVariance.read())); });
      return w;
    };
    this.movingStddev = stddev('moving_stddev');
    this.renormMean = this.addWeight('renorm_mean', [channels], 'float32', this.movingMeanInitializer,
        undefined, false);
    this.renormStddev = stddev('renorm_stddev');
    if (this.renormWarmup != null) {
      this.renormStep = this.addWeight('renorm_step', [], 'float32', tfl.initializers.zeros(), undefined, false);
    }
  }

  protected override normalizeBatch(x: tf.Tensor, mask: tf.Tensor | null): BatchNormTrainingResult {
    // One scalar read per step, and only with a warm-up: the limits are kernel attributes.
    const step = this.renormStep == null ? 0 : this.renormStep.read().dataSync()[0];
    return this.batchTraining(x, mask, {
      mean: this.renormMean.read() as tf.Tensor1D,
      stddev: this.renormStddev.read() as tf.Tensor1D,
      ...renormLimits(this.renormClipping, this.renormWarmup, step),
    });
  }

  protected override updateStatistics(batch: BatchNormTrainingResult, count: number): void {
    const stddev = (variance: tf.Tensor1D) => tf.sqrt(tf.add(variance, this.epsilon));
    movingAverage(this.renormMean, batch.mean, this.renormMomentum);
    movingAverage(this.renormStddev, stddev(batch.variance), this.renormMomentum);
    movingAverage(this.movingMean, batch.mean, this.momentum);
    movingAverage(this.movingStddev, stddev(this.populationVariance(batch, count)), this.momentum);
    // relu: rounding can take moving_stddev² a hair below ε (Keras does the same).
    this.movingVariance.write(tf.relu(tf.sub(tf.square(this.movingStddev.read()), this.epsilon)));
    if (this.renormStep != null && this.renormWarmup != null) {
      this.renormStep.write(tf.minimum(tf.add(this.renormStep.read(), 1), warmupEnd(this.renormWarmup)));
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      ...super.getConfig(),
      renormClipping: {...this.renormClipping},
      renormMomentum: this.renormMomentum,
    };
    if (this.renormWarmup != null) config.renormWarmup = {...this.renormWarmup};
    return config;
  }
}
tf.serialization.registerClass(BatchRenormLayer);
