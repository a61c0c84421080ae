/**
 * A stateful layer of your own (`npm run example:mean-only`): mean-only batch
 * normalization (Salimans & Kingma, "Weight Normalization", NeurIPS 2016,
 * section 3), which centers each channel with the batch mean and does not
 * divide by the standard deviation:
 *   training:  y = γ·(x − μ_B) + β,  moving_mean ← momentum·moving_mean + (1 − momentum)·μ_B
 *   inference: y = γ·(x − moving_mean) + β
 * It has its own moving statistic and config field (`momentum`), is saved and
 * reloaded (validated by `checked`), and `foldBatchNorm` folds it into the
 * Dense before it, all with names the package exports (docs/extending.md).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  channelScaleOffset, checked, foldBatchNorm, InferenceScaleOffset, movingAverage, NormalizationLayer,
  NormalizationConfigError, NormalizationLayerArgs, StatisticWeight,
} from 'tfjs-normalization';
import {runMain} from './run_main';

export interface MeanOnlyBatchNormArgs extends NormalizationLayerArgs {
  /** Weight of the old value in the moving mean, in [0, 1]. Default 0.99 (Keras's BN default). */
  momentum?: number;
}

export class MeanOnlyBatchNorm extends NormalizationLayer {
  // Each subclass has its own className: the registry key a saved model refers to.
  static override className = 'MeanOnlyBatchNorm';
  static override configFields: readonly string[] = [...NormalizationLayer.configFields, 'momentum'];

  // The weight buildStatistics adds, so that checked()/fileSystem validate a saved file before building.
  protected static override statisticWeights(_config: Record<string, unknown>): StatisticWeight[] {
    return [{name: 'moving_mean'}];
  }

  readonly momentum: number;
  movingMean: tfl.LayerVariable | null = null;

  constructor(args: MeanOnlyBatchNormArgs = {}) {
    super(args);
    const momentum = args.momentum ?? 0.99;
    if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1)) {
      throw new NormalizationConfigError(this.describeLayer(), 'momentum', momentum,
          `${this.describeLayer()}: invalid momentum ${momentum}; expected a number in [0, 1].`);
    }
    this.momentum = momentum;
  }

  protected override buildStatistics(_inputShape: tfl.Shape, channels: number): void {
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', tfl.initializers.zeros(), undefined, false);
  }

  protected override normalize(x: tf.Tensor, training: boolean): tf.Tensor {
    if (!training) {
      const {scale, offset} = this.inferenceScaleOffset() as {scale: tf.Tensor1D; offset: tf.Tensor1D};
      return channelScaleOffset(x, scale, offset, this.channelAxis);
    }
    const axes = x.shape.map((_, i) => i).filter((i) => i !== this.channelAxis);
    const batchMean = tf.mean(x, axes, true);
    let y = tf.sub(x, batchMean);
    // [C] → [1, …, C, …, 1] so that per-channel weights broadcast along the channel axis.
    const perChannel = (t: tf.Tensor) => tf.reshape(t, batchMean.shape);
    const gamma = this.gammaValue();
    const beta = this.betaValue();
    if (gamma != null) y = tf.mul(y, perChannel(gamma));
    if (beta != null) y = tf.add(y, perChannel(beta));
    movingAverage(this.movingMean!, tf.reshape(batchMean, [-1]), this.momentum);
    return y;
  }

  // Inference is y = x·γ + (β − γ·moving_mean): foldBatchNorm merges it into a linear layer before it.
  override inferenceScaleOffset(): InferenceScaleOffset {
    const mean = this.movingMean!.read() as tf.Tensor1D;
    const scale = this.gammaValue() ?? tf.onesLike(mean);
    const shift = tf.neg(tf.mul(scale, mean)) as tf.Tensor1D;
    const beta = this.betaValue();
    return {scale: tf.clone(scale), offset: beta == null ? shift : tf.add(shift, beta)};
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), momentum: this.momentum};
  }
}
tf.serialization.registerClass(MeanOnlyBatchNorm);

export interface MeanOnlyResult {
  losses: number[];
  /** Model input used for every prediction below, and the weights of 'dense' and 'mean_bn' after training. */
  x: Float32Array;
  weights: Record<string, Float32Array>;
  before: Float32Array;
  after: Float32Array;
  reloadedIsMeanOnly: boolean;
  reloadedConfig: tf.serialization.ConfigDict;
  folded: string[];
  foldedLayers: string[];
  foldedOutputNames: string[];
  foldedPredictions: Float32Array;
}

/** Two blobs in 2-D, offset far from the origin (what centering is for). */
function blobs(n: number): {x: tf.Tensor2D; y: tf.Tensor2D} {
  return tf.tidy(() => {
    const labels = Array.from({length: n}, (_, i) => i % 2);
    const centers = tf.tensor2d(labels.map((l) => l === 0 ? [4, 5] : [6, 3]));
    const x = tf.add(centers, tf.randomNormal([n, 2], 0, 0.6, 'float32', 5)) as tf.Tensor2D;
    return {x, y: tf.cast(tf.oneHot(labels, 2), 'float32') as tf.Tensor2D};
  });
}

export async function main(options: {epochs?: number; log?: (line: string) => void} = {}): Promise<MeanOnlyResult> {
  const {epochs, log} = {epochs: 20, log: console.log, ...options};
  await tf.setBackend('cpu');
  const input = tfl.input({shape: [2], name: 'features'});
  const hidden = tfl.layers.dense({units: 4, name: 'dense',
    kernelInitializer: tfl.initializers.glorotUniform({seed: 3})}).apply(input) as tfl.SymbolicTensor;
  const centered = new MeanOnlyBatchNorm({name: 'mean_bn', momentum: 0.8}).apply(hidden) as tfl.SymbolicTensor;
  const relu = tfl.layers.activation({activation: 'relu', name: 'relu'}).apply(centered) as tfl.SymbolicTensor;
  const probabilities = tfl.layers.dense({units: 2, activation: 'softmax', name: 'classes',
    kernelInitializer: tfl.initializers.glorotUniform({seed: 4})}).apply(relu) as tfl.SymbolicTensor;
  const model = tfl.model({inputs: input, outputs: probabilities});
  const optimizer = tf.train.adam(0.05);
  model.compile({optimizer, loss: 'categoricalCrossentropy'});
  const {x, y} = blobs(64);
  const history = await model.fit(x, y, {epochs, batchSize: 16, shuffle: false, verbose: 0});
  const losses = history.history.loss as number[];
  log(`Training loss: ${losses[0].toFixed(3)} → ${losses[losses.length - 1].toFixed(3)}`);
  // The layer's output in inference (moving mean), through a model that shares the trained layers.
  const centeredBy = (m: tfl.LayersModel) => tfl.model({inputs: m.inputs, outputs: m.getLayer('mean_bn').output});
  const predict = (m: tfl.LayersModel) => tf.tidy(() => (m.predict(x) as tf.Tensor).dataSync() as Float32Array);
  const before = predict(centeredBy(model));

  // Save and reload in memory; checked() validates the file against statisticWeights first.
  let saved: tf.io.ModelArtifacts | null = null;
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    saved = artifacts;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  const reloaded = await tfl.loadLayersModel(checked(tf.io.fromMemory(saved!)));
  const after = predict(centeredBy(reloaded));
  const reloadedLayer = reloaded.getLayer('mean_bn');
  log(`Reloaded '${reloadedLayer.name}' as ${reloadedLayer.getClassName()}; outputs ` +
      `${before.every((v, i) => Object.is(v, after[i])) ? 'bit-identical' : 'DIFFERENT'}.`);

  // Dense → MeanOnlyBatchNorm folds into one Dense, which takes the name 'mean_bn'.
  const fold = foldBatchNorm(centeredBy(model));
  const foldedPredictions = predict(fold.model);
  log(`foldBatchNorm folded [${fold.folded.join(', ')}]; layers now ${fold.model.layers.map((l) => l.name).join(', ')}.`);

  const weights: Record<string, Float32Array> = {};
  for (const w of [...model.getLayer('dense').weights, ...model.getLayer('mean_bn').weights]) {
    weights[w.originalName] = w.read().dataSync() as Float32Array;
  }
  const result: MeanOnlyResult = {
    losses, x: x.dataSync() as Float32Array, weights, before, after,
    reloadedIsMeanOnly: reloadedLayer instanceof MeanOnlyBatchNorm, reloadedConfig: reloadedLayer.getConfig(),
    folded: fold.folded, foldedLayers: fold.model.layers.map((l) => l.name), foldedOutputNames: fold.model.outputNames,
    foldedPredictions,
  };
  tf.dispose([x, y]);
  for (const m of [model, reloaded, fold.model]) m.dispose();
  optimizer.dispose();
  return result;
}

runMain(module, () => main());
