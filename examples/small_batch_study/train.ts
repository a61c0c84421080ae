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

export const CLASSES = 10;

/**
 * Trains a fresh model: `epochs` passes over `train` in a seeded order, full
 * batches only (a trailing partial batch is dropped so every step has
 * `batchSize` examples).
 */
export async function trainRun(variant: Variant, train: Dataset, config: RunConfig): Promise<TrainedRun> {
  const {batchSize, epochs} = config;
  const stepsPerEpoch = Math.floor(train.count / batchSize);
  const steps = stepsPerEpoch * epochs;
  const model = buildModel(variant, config.shape, config.seed, steps);
  model.compile({optimizer: config.optimizer, loss: 'categoricalCrossentropy'});
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

/**
 * Class probabilities when the model predicts in training mode: each
 * consecutive batch of `batchSize` test examples (the last one may be
 * smaller) is normalized with its own batch statistics. Calling a layer in
 * training mode also updates its moving statistics, so this changes `model`:
 * pass a copy. Throws what the model throws (e.g. a layer that refuses a
 * batch of one value per feature).
 */
export function predictTrainingMode(model: tfl.LayersModel, data: Dataset, shape: ModelShape, batchSize: number):
    Float32Array {
  const size = data.height * data.width;
  const out = new Float32Array(data.count * CLASSES);
  for (let start = 0; start < data.count; start += batchSize) {
    const n = Math.min(batchSize, data.count - start);
    tf.tidy(() => {
      const x = tf.tensor(data.images.subarray(start * size, (start + n) * size), inputShape(shape, n));
      out.set((model.apply(x, {training: true}) as tf.Tensor).dataSync(), start * CLASSES);
    });
  }
  return out;
}

/**
 * The prediction batch statistics give for a batch of one example, worked out
 * from the weights rather than by running the layer: with one value per
 * feature, μ_B = x and σ²_B = 0, so x̂ = 0 and the last normalization layer
 * outputs its β whatever the input; the layers after it map β to one class.
 * Returns that class's probabilities (the same for every input).
 */
export function batchOfOnePrediction(model: tfl.LayersModel): Float32Array {
  const isBeta = (w: tfl.LayerVariable) => /(^|\/)beta(_\d+)?$/.test(w.originalName);
  const last = model.layers.map((l) => l.weights.some(isBeta)).lastIndexOf(true);
  if (last < 0) throw new Error(`The model '${model.name}' has no normalization layer with a beta weight.`);
  return tf.tidy(() => {
    let h = tf.expandDims(model.layers[last].weights.find(isBeta)!.read(), 0);
    for (const layer of model.layers.slice(last + 1)) h = layer.apply(h) as tf.Tensor;
    return h.dataSync() as Float32Array;
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

/** The model input shape for `n` examples. */
export function inputShape(shape: ModelShape, n: number): number[] {
  return shape.arch === 'mlp' ? [n, shape.height * shape.width] : [n, shape.height, shape.width, 1];
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}
