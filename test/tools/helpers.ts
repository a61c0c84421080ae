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

/**
 * Stride-1 NHWC convolution, 'valid' or 'same' (odd kernels), in float64: kernel [kh, kw, in, out], or
 * [kh, kw, C, 1] when `depthwise`; `bias` per output channel (none when omitted).
 */
export function convRef(x: Ref, kernel: ArrayLike<number>, kh: number, kw: number, cout: number,
    padding: 'valid' | 'same', depthwise = false, bias?: ArrayLike<number>): Ref {
  const [n, h, w, cin] = x.shape;
  const pad = padding === 'same' ? (kh - 1) / 2 : 0;
  const oh = h - kh + 1 + 2 * pad;
  const ow = w - kw + 1 + 2 * pad;
  const data = new Float64Array(n * oh * ow * cout);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        for (let o = 0; o < cout; o++) {
          let acc = bias == null ? 0 : bias[o];
          for (let di = 0; di < kh; di++) {
            for (let dj = 0; dj < kw; dj++) {
              const r = i + di - pad;
              const c = j + dj - pad;
              if (r < 0 || r >= h || c < 0 || c >= w) continue;
              for (let q = 0; q < cin; q++) {
                if (depthwise && q !== o) continue;
                const k = depthwise ? (di * kw + dj) * cin + q : ((di * kw + dj) * cin + q) * cout + o;
                acc += x.data[((s * h + r) * w + c) * cin + q] * kernel[k];
              }
            }
          }
          data[((s * oh + i) * ow + j) * cout + o] = acc;
        }
      }
    }
  }
  return {shape: [n, oh, ow, cout], data};
}
