/**
 * The low-level path (`npm run example:low-level`): normalize with an explicit
 * mean and variance, as `tf.nn.batch_normalization` does in TensorFlow, inside
 * a wrapper that owns γ, β and the moving averages, and a training loop that
 * uses it. No layers API: plain variables, an optimizer and `minimize`.
 *
 * Two interchangeable ops:
 *  - 'tf.batchNorm': tfjs's `tf.batchNorm(x, mean, variance, offset, scale, ε)`
 *    with `tf.moments` for the batch statistics (gradient by autodiff);
 *  - 'package': this package's `batchNormTraining` (statistics and output in one
 *    kernel, hand-written gradient) and `batchNormInference`.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers'; // registers the gradients of tfjs's own ops
import {batchNormInference, batchNormTraining} from 'tfjs-normalization';
import {runMain} from './run_main';

export type NormOp = 'tf.batchNorm' | 'package';

/** The design note's wrapper: ε = 1e-5, momentum 0.99, moments over all axes but the last. */
export class BatchNormWrapper {
  readonly scale: tf.Variable;
  readonly offset: tf.Variable;
  readonly movingMean: tf.Variable;
  readonly movingVariance: tf.Variable;

  constructor(channels: number, readonly op: NormOp, readonly epsilon = 1e-5, readonly momentum = 0.99) {
    this.scale = variable(() => tf.ones([channels]));
    this.offset = variable(() => tf.zeros([channels]));
    this.movingMean = variable(() => tf.zeros([channels]), false);
    this.movingVariance = variable(() => tf.ones([channels]), false);
  }

  apply(x: tf.Tensor, training: boolean): tf.Tensor {
    const channelAxis = x.rank - 1;
    if (!training) {
      return this.op === 'package' ?
        batchNormInference(x, this.movingMean as tf.Tensor1D, this.movingVariance as tf.Tensor1D,
            this.scale as tf.Tensor1D, this.offset as tf.Tensor1D, channelAxis, this.epsilon) :
        tf.batchNorm(x, this.movingMean, this.movingVariance, this.offset, this.scale, this.epsilon);
    }
    let y: tf.Tensor;
    let mean: tf.Tensor;
    let variance: tf.Tensor;
    if (this.op === 'package') {
      ({y, mean, variance} = batchNormTraining(x, this.scale as tf.Tensor1D, this.offset as tf.Tensor1D,
          {axis: channelAxis, epsilon: this.epsilon}));
    } else {
      ({mean, variance} = tf.moments(x, Array.from({length: channelAxis}, (_, i) => i)));
      y = tf.batchNorm(x, mean, variance, this.offset, this.scale, this.epsilon);
    }
    // assign_moving_average(moving, batch, decay=momentum); no gradient flows into the statistics.
    this.movingMean.assign(tf.add(tf.mul(this.movingMean, this.momentum), tf.mul(mean, 1 - this.momentum)));
    this.movingVariance.assign(tf.add(tf.mul(this.movingVariance, this.momentum),
        tf.mul(variance, 1 - this.momentum)));
    return y;
  }

  dispose(): void {
    tf.dispose([this.scale, this.offset, this.movingMean, this.movingVariance]);
  }
}

/** A variable whose initial-value tensor is released (tf.variable keeps a tensor of its own). */
function variable(init: () => tf.Tensor, trainable = true): tf.Variable {
  return tf.tidy(() => tf.variable(init(), trainable));
}

export interface LowLevelResult {
  losses: number[];
  testAccuracy: number;
  movingMean: Float32Array;
  movingVariance: Float32Array;
}

/** Trains x → W1 → batch norm → ReLU → W2 → softmax on two classes whose features are far from zero mean and unit scale. */
export async function main(options: {op?: NormOp; steps?: number; log?: (line: string) => void} = {}):
    Promise<LowLevelResult> {
  const {op, steps, log} = {op: 'package' as NormOp, steps: 200, log: console.log, ...options};
  await tf.setBackend('cpu');
  const batch = 32;
  const data = (n: number, seed: number) => tf.tidy(() => {
    const labels = tf.cast(tf.greater(tf.randomUniform([n], 0, 1, 'float32', seed), 0.5), 'float32');
    const direction = tf.randomNormal([1, 10], 0, 1, 'float32', 1);
    // Features with mean 50 and spread 10; the class shifts them along `direction`.
    const x = tf.add(tf.randomNormal([n, 10], 50, 10, 'float32', seed + 1),
        tf.mul(tf.reshape(tf.sub(tf.mul(labels, 2), 1), [n, 1]), tf.mul(direction, 4)));
    return {x, y: tf.cast(tf.oneHot(tf.cast(labels, 'int32'), 2), 'float32'), labels};
  });
  const w1 = variable(() => tf.randomNormal([10, 16], 0, Math.sqrt(2 / 10), 'float32', 2));
  const w2 = variable(() => tf.randomNormal([16, 2], 0, Math.sqrt(2 / 16), 'float32', 3));
  const norm = new BatchNormWrapper(16, op);
  const logits = (x: tf.Tensor, training: boolean) =>
    tf.matMul(tf.relu(norm.apply(tf.matMul(x, w1), training)), w2);
  const optimizer = tf.train.sgd(0.1);
  const train = data(steps * batch, 10);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const loss = optimizer.minimize(() => tf.tidy(() => {
      const x = tf.slice(train.x, [s * batch, 0], [batch, 10]);
      const y = tf.slice(train.y, [s * batch, 0], [batch, 2]);
      // Cross-entropy from logSoftmax (tfjs's softmaxCrossEntropy trips its own kernel leak check in tests).
      return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.logSoftmax(logits(x, true))), 1)));
    }), true, [w1, w2, norm.scale, norm.offset])!;
    losses.push(loss.dataSync()[0]);
    loss.dispose();
  }
  const test = data(1000, 20);
  const testAccuracy = tf.tidy(() =>
    tf.mean(tf.cast(tf.equal(tf.argMax(logits(test.x, false), 1), tf.cast(test.labels, 'int32')), 'float32')).dataSync()[0]);
  const result = {
    losses, testAccuracy,
    movingMean: norm.movingMean.dataSync() as Float32Array,
    movingVariance: norm.movingVariance.dataSync() as Float32Array,
  };
  const avg = (a: number[]) => a.reduce((p, q) => p + q, 0) / a.length;
  log(`op ${op}: loss ${avg(losses.slice(0, 10)).toFixed(3)} (first 10 steps) → ` +
      `${avg(losses.slice(-10)).toFixed(3)} (last 10); test accuracy with the moving statistics ` +
      `${(testAccuracy * 100).toFixed(1)}%`);
  tf.dispose([train.x, train.y, train.labels, test.x, test.y, test.labels, w1, w2]);
  norm.dispose();
  optimizer.dispose();
  return result;
}

runMain(module, async () => {
  await main({op: 'tf.batchNorm'});
  await main({op: 'package'});
});
