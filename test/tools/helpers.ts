import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {randomData, Ref} from '../helpers/reference';

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

/** x·W + b with W of shape [in, units], then `act`, in float64. */
export function denseRef(x: Ref, W: ArrayLike<number>, b: ArrayLike<number>, act: (v: number) => number = (v) => v): Ref {
  const [n, k] = x.shape;
  const units = b.length;
  const data = new Float64Array(n * units);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < units; j++) {
      let s = b[j];
      for (let q = 0; q < k; q++) s += x.data[i * k + q] * W[q * units + j];
      data[i * units + j] = act(s);
    }
  }
  return {shape: [n, units], data};
}
