/**
 * Drop the package's layers into a `tf.sequential` model and train it with
 * `model.fit` (`npm run example:sequential`).
 *
 * The layers go where `tf.layers.batchNormalization` would: after a Dense (or
 * Conv2D) layer without activation, before the nonlinearity. `fit` runs them
 * in training mode (batch statistics, moving averages updated); `predict` and
 * `evaluate` use the moving statistics. After a Conv2D layer the same layers
 * normalize per channel (channels-last; pass `axis: 1` for channels-first).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNorm, batchRenorm, groupNorm} from 'tfjs-normalization';
import {runMain} from './run_main';

export interface SequentialOptions {
  epochs: number;
  batchSize: number;
  log: (line: string) => void;
}

export interface SequentialResult {
  losses: number[];
  /** Accuracy on held-out points, in inference mode. */
  testAccuracy: number;
}

const CLASSES = 3;
const FEATURES = 8;

/** Points around three seeded random centres in 8-D, one class per centre. */
function blobs(n: number, seed: number): {x: tf.Tensor2D; y: tf.Tensor2D; labels: number[]} {
  return tf.tidy(() => {
    const centres = tf.randomNormal([CLASSES, FEATURES], 0, 1, 'float32', 1);
    const labels = Array.from({length: n}, (_, i) => i % CLASSES);
    const x = tf.add(tf.gather(centres, labels), tf.randomNormal([n, FEATURES], 0, 1, 'float32', seed));
    return {x: x as tf.Tensor2D, y: tf.cast(tf.oneHot(labels, CLASSES), 'float32') as tf.Tensor2D, labels};
  });
}

export async function main(options: Partial<SequentialOptions> = {}): Promise<SequentialResult> {
  const {epochs, batchSize, log} = {epochs: 20, batchSize: 8, log: console.log, ...options};
  await tf.setBackend('cpu');
  // No bias before a normalization layer: its beta plays that role.
  const dense = (units: number, seed: number, inputShape?: number[]) => tfl.layers.dense(
      {units, useBias: false, inputShape, kernelInitializer: tfl.initializers.glorotUniform({seed})});
  const model = tfl.sequential({layers: [
    dense(32, 1, [FEATURES]),
    batchNorm(), // Keras BatchNormalization()
    tfl.layers.activation({activation: 'relu'}),
    dense(32, 2),
    batchRenorm({renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}}), // BatchNormalization(renorm=True, ...)
    tfl.layers.activation({activation: 'relu'}),
    dense(32, 3),
    groupNorm({groups: 4}), // GroupNormalization(groups=4)
    tfl.layers.activation({activation: 'relu'}),
    tfl.layers.dense({units: CLASSES, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({seed: 4})}),
  ]});
  const optimizer = tf.train.adam(0.01);
  model.compile({optimizer, loss: 'categoricalCrossentropy'});

  const train = blobs(480, 10);
  const test = blobs(300, 11);
  const history = await model.fit(train.x, train.y, {epochs, batchSize, shuffle: false, verbose: 0});
  const losses = history.history.loss as number[];
  const predicted = tf.tidy(() => tf.argMax(model.predict(test.x) as tf.Tensor, 1).arraySync() as number[]);
  const testAccuracy = predicted.filter((p, i) => p === test.labels[i]).length / predicted.length;
  log(`Training loss by epoch: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  log(`Test accuracy (inference mode, moving statistics): ${(testAccuracy * 100).toFixed(1)}%`);
  tf.dispose([train.x, train.y, test.x, test.y]);
  model.dispose();
  optimizer.dispose(); // compile does not take ownership of an optimizer instance
  return {losses, testAccuracy};
}

runMain(module, () => main());
