/** One training run of the study, evaluation, and the save/load check. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {Dataset, permutation, seededRandom} from './data';
import {buildModel, ModelShape, Variant} from './model';
import {Progress} from './progress';

export interface RunConfig {
  shape: ModelShape;
  batchSize: number;
  epochs: number;
  /** Seeds the initial weights and the example order. */
  seed: number;
  optimizer: tf.Optimizer;
  /** Show a progress bar with this label. */
  progressLabel?: string;
}

export interface TrainedRun {
  model: tfl.LayersModel;
  steps: number;
  /** Mean training loss over the first and the last tenth of the steps. */
  firstLoss: number;
  lastLoss: number;
  msPerStep: number;
}

const CLASSES = 10;

/**
 * Trains a fresh model: `epochs` passes over `train` in a seeded order, full
 * batches only (a trailing partial batch is dropped so every step has
 * `batchSize` examples).
 */
export async function trainRun(variant: Variant, train: Dataset, config: RunConfig): Promise<TrainedRun> {
  const {batchSize, epochs} = config;
  const model = buildModel(variant, config.shape, config.seed);
  model.compile({optimizer: config.optimizer, loss: 'categoricalCrossentropy'});
  const stepsPerEpoch = Math.floor(train.count / batchSize);
  const steps = stepsPerEpoch * epochs;
  const losses: number[] = [];
  const progress = config.progressLabel == null ? null : new Progress(config.progressLabel, steps);
  const random = seededRandom(config.seed);
  const size = train.height * train.width;
  const xs = new Float32Array(batchSize * size);
  const ys = new Float32Array(batchSize * CLASSES);
  const start = Date.now();
  for (let epoch = 0; epoch < epochs; epoch++) {
    const order = permutation(train.count, random);
    for (let s = 0; s < stepsPerEpoch; s++) {
      ys.fill(0);
      for (let i = 0; i < batchSize; i++) {
        const k = order[s * batchSize + i];
        xs.set(train.images.subarray(k * size, (k + 1) * size), i * size);
        ys[i * CLASSES + train.labels[k]] = 1;
      }
      const x = tf.tensor(xs, inputShape(config.shape, batchSize));
      const y = tf.tensor2d(ys, [batchSize, CLASSES]);
      const loss = await model.trainOnBatch(x, y) as number;
      tf.dispose([x, y]);
      losses.push(loss);
      progress?.update(losses.length, loss);
    }
  }
  const tenth = Math.max(1, Math.floor(steps / 10));
  return {
    model, steps,
    firstLoss: mean(losses.slice(0, tenth)),
    lastLoss: mean(losses.slice(-tenth)),
    msPerStep: (Date.now() - start) / Math.max(steps, 1),
  };
}

/** Class probabilities for every example of `data`, in inference mode (moving statistics). */
export function predict(model: tfl.LayersModel, data: Dataset, shape: ModelShape): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor(data.images, inputShape(shape, data.count));
    return (model.predict(x, {batchSize: 500}) as tf.Tensor).dataSync() as Float32Array;
  });
}

export function accuracy(probabilities: Float32Array, labels: Uint8Array): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < CLASSES; c++) {
      if (probabilities[i * CLASSES + c] > probabilities[i * CLASSES + best]) best = c;
    }
    if (best === labels[i]) correct++;
  }
  return correct / labels.length;
}

/** True when both arrays hold the same float32 bit patterns. */
export function bitIdentical(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length &&
      Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength),
          Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function inputShape(shape: ModelShape, n: number): number[] {
  return shape.arch === 'mlp' ? [n, shape.height * shape.width] : [n, shape.height, shape.width, 1];
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}
