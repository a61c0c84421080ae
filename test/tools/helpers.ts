import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {randomData} from '../helpers/reference';

/** Fills every weight with deterministic values; variances and standard deviations stay positive. */
export function randomizeWeights(model: tfl.LayersModel, seed: number): void {
  let s = seed;
  for (const w of model.weights) {
    const size = w.shape.reduce((a, b) => a! * b!, 1)!;
    const positive = /variance|stddev/.test(w.originalName);
    const values = randomData(size, s++, positive ? 1.5 : 0.2, positive ? 0.5 : 1);
    w.write(tf.tensor(values, w.shape as number[]));
  }
}
