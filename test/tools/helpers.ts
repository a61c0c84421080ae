import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'fs';
import * as path from 'path';
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

/** A fixture's weights by name, read from its .bin as little-endian float32, independently of tfjs. */
export function readFixtureWeights(dir: string): Record<string, number[]> {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const [group] = json.weightsManifest;
  const bin = fs.readFileSync(path.join(dir, group.paths[0]));
  const out: Record<string, number[]> = {};
  let offset = 0;
  for (const w of group.weights as Array<{name: string; shape: number[]}>) {
    const size = w.shape.reduce((a, b) => a * b, 1);
    out[w.name] = Array.from({length: size}, (_, i) => bin.readFloatLE(offset + 4 * i));
    offset += 4 * size;
  }
  if (offset !== bin.length) throw new Error(`${dir}: the manifest declares ${offset} bytes, the .bin holds ${bin.length}`);
  return out;
}
