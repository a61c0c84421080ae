/**
 * A layer of your own on the package's base class (`npm run example:extend`):
 * Filter Response Normalization with its Thresholded Linear Unit (Singh &
 * Krishnan, CVPR 2020). Per sample and channel, ν² = mean of x² over the
 * spatial positions; y = max(γ·x/√(ν² + ε) + β, τ). No batch statistics, so
 * training and inference compute the same thing.
 *
 * The base (NormalizationLayer) supplies config validation, the channel axis,
 * gamma/beta, getConfig and the training flag; the subclass adds its config
 * field, its extra weight τ, and the formula.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  fileSystem, foldBatchNorm, InferenceScaleOffset, NormalizationLayer, NormalizationLayerArgs, NormalizationShapeError,
  StatisticWeight,
} from 'tfjs-normalization/node';
import {runMain} from './run_main';

export interface FilterResponseNormArgs extends NormalizationLayerArgs {
  /** Learn the threshold τ of the TLU. Default true. */
  tlu?: boolean;
}

export class FilterResponseNorm extends NormalizationLayer {
  static override className = 'FilterResponseNormalization';
  static override configFields: readonly string[] = [...NormalizationLayer.configFields, 'tlu'];

  readonly tlu: boolean;
  tau: tfl.LayerVariable | null = null;

  constructor(args: FilterResponseNormArgs = {}) {
    super(args, 1e-6); // the paper's ε
    this.tlu = args.tlu ?? true;
  }

  // The weights buildStatistics adds, so that model-file validation knows them before building.
  protected static override statisticWeights(config: Record<string, unknown>): StatisticWeight[] {
    return config.tlu === false ? [] : [{name: 'tau'}];
  }

  // Shape checks run before any weight exists, so a failed build can be retried with another shape.
  protected override checkInputShape(inputShape: tfl.Shape): void {
    if (inputShape.length < 3) {
      throw new NormalizationShapeError(this.describeLayer(), 'input',
          `${this.describeLayer()}: needs spatial positions (rank >= 3); received rank ${inputShape.length}.`);
    }
  }

  protected override buildStatistics(_inputShape: tfl.Shape, channels: number): void {
    if (this.tlu) this.tau = this.addWeight('tau', [channels], 'float32', tfl.initializers.zeros());
  }

  // foldBatchNorm keeps the layer with this reason.
  override inferenceScaleOffset(): InferenceScaleOffset {
    return {reason: 'Filter Response Normalization divides each sample by its own mean of x², which no kernel can absorb'};
  }

  protected override normalize(x: tf.Tensor): tf.Tensor {
    // [C] → [1, …, C, …, 1] so that per-channel values broadcast along the channel axis.
    const perChannel = (t: tf.Tensor) => tf.reshape(t, x.shape.map((d, i) => i === this.channelAxis ? d : 1));
    const spatial = x.shape.map((_, i) => i).filter((i) => i !== 0 && i !== this.channelAxis);
    let y = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), spatial, true), this.epsilon)));
    const gamma = this.gammaValue();
    const beta = this.betaValue();
    if (gamma != null) y = tf.mul(y, perChannel(gamma));
    if (beta != null) y = tf.add(y, perChannel(beta));
    if (this.tau == null) return y;
    // max(y, τ) written as relu(y − τ) + τ: tfjs's Maximum gradient does not reduce over broadcast axes.
    const tau = perChannel(this.tau.read());
    return tf.add(tf.relu(tf.sub(y, tau)), tau);
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), tlu: this.tlu};
  }
}
// Loading finds the class by its className.
tf.serialization.registerClass(FilterResponseNorm);

export interface ExtendResult {
  losses: number[];
  before: Float32Array;
  after: Float32Array;
  /** The reloaded layer's class and config. */
  reloadedIsFrn: boolean;
  reloadedConfig: tf.serialization.ConfigDict;
  /** What foldBatchNorm did with the layer. */
  fold: {folded: string[]; kept: Array<{name: string; reason: string}>};
}

/** 8×8 images: class 0 is brighter in the top half, class 1 in the bottom half. */
function images(n: number): {x: tf.Tensor4D; y: tf.Tensor2D} {
  return tf.tidy(() => {
    const labels = Array.from({length: n}, (_, i) => i % 2);
    const rows = tf.reshape(tf.linspace(-1, 1, 8), [1, 8, 1, 1]);
    const sign = tf.reshape(tf.tensor1d(labels.map((l) => (l === 0 ? -1 : 1))), [n, 1, 1, 1]);
    const x = tf.add(tf.mul(tf.mul(rows, sign), 0.3), tf.randomNormal([n, 8, 8, 1], 0, 1, 'float32', 3));
    return {x: x as tf.Tensor4D, y: tf.cast(tf.oneHot(labels, 2), 'float32') as tf.Tensor2D};
  });
}

export async function main(options: {epochs?: number; log?: (line: string) => void} = {}): Promise<ExtendResult> {
  const {epochs, log} = {epochs: 15, log: console.log, ...options};
  await tf.setBackend('cpu');
  const model = tfl.sequential({layers: [
    tfl.layers.conv2d({inputShape: [8, 8, 1], filters: 4, kernelSize: 3, padding: 'same',
      kernelInitializer: tfl.initializers.glorotUniform({seed: 1})}),
    new FilterResponseNorm({name: 'frn'}),
    tfl.layers.flatten(),
    tfl.layers.dense({units: 2, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({seed: 2})}),
  ]});
  const optimizer = tf.train.adam(0.02);
  model.compile({optimizer, loss: 'categoricalCrossentropy'});
  const {x, y} = images(64);
  const losses = (await model.fit(x, y, {epochs, batchSize: 16, shuffle: false, verbose: 0})).history.loss as number[];
  log(`Training loss: ${losses[0].toFixed(3)} → ${losses[losses.length - 1].toFixed(3)}`);
  const before = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync() as Float32Array);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frn-'));
  try {
    await model.save(fileSystem(dir));
    const reloaded = await tfl.loadLayersModel(fileSystem(dir));
    const after = tf.tidy(() => (reloaded.predict(x) as tf.Tensor).dataSync() as Float32Array);
    const reloadedLayer = reloaded.getLayer('frn');
    log(`Reloaded '${reloadedLayer.name}' as ${reloadedLayer.getClassName()}; predictions ` +
        `${before.every((v, i) => Object.is(v, after[i])) ? 'bit-identical' : 'DIFFERENT'}.`);
    const {model: folded, folded: foldedNames, kept} = foldBatchNorm(model);
    log(`foldBatchNorm kept ${kept.map((k) => `'${k.name}': ${k.reason}`).join('; ')}.`);
    const result = {losses, before, after, reloadedIsFrn: reloadedLayer instanceof FilterResponseNorm,
      reloadedConfig: reloadedLayer.getConfig(), fold: {folded: foldedNames, kept}};
    reloaded.dispose();
    folded.dispose();
    return result;
  } finally {
    fs.rmSync(dir, {recursive: true, force: true});
    tf.dispose([x, y]);
    model.dispose();
    optimizer.dispose();
  }
}

runMain(module, () => main());
