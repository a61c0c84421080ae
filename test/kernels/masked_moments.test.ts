/**
 * maskedBatchNormTraining (src/kernels/masked_moments.ts) on cpu (fused
 * channelScaleOffset) and wasm (composite): statistics and outputs against a
 * float64 reference of Keras 3's masked moments, gradients against central
 * differences of that reference, renorm r and d, accuracy for badly centred
 * inputs, mask checks and leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import {NormalizationShapeError} from '../../src';
import {checkMask, maskedBatchNormTraining, unmaskedCount} from '../../src/kernels/masked_moments';
import {useBackend} from '../helpers/backends';
import {maskedMomentsRef} from '../helpers/masked_reference';
import {maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {centralDifferences, renormStepRef, weightedSum} from '../helpers/variant_reference';

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const withoutAxis = (shape: number[], axis: number) => shape.filter((_, i) => i !== axis);

/** A deterministic mask with about a third of the positions masked, and at least two unmasked. */
function maskData(n: number, seed: number): boolean[] {
  const u = randomData(n, seed);
  return Array.from(u, (v, i) => i < 2 || v > -0.6);
}

// Channels-last (Keras's case) and channels-first layouts, rank 2 to 5.
const CASES: Array<[number[], number]> = [[[7, 3], 1], [[4, 6, 3], 2], [[3, 4, 5], 1], [[2, 3, 4, 5], 1],
  [[2, 4, 3, 5], 3], [[2, 3, 2, 2, 4], 2]];

for (const backend of ['cpu', 'wasm']) {
  describe(`maskedBatchNormTraining on ${backend}`, () => {
    useBackend(backend);

    for (const [shape, axis] of CASES) {
      const c = shape[axis];
      const xData = randomData(size(shape), 11 + shape.length, 0.5, 2);
      const mask = maskData(size(withoutAxis(shape, axis)), 17 + axis);
      const gamma = Array.from(randomData(c, 19, 1, 0.3));
      const beta = Array.from(randomData(c, 23));
      const eps = 1e-3;
      const maskTensor = () => tf.tensor(mask, withoutAxis(shape, axis), 'bool');

      it(`mean, variance and y follow Keras's masked moments for [${shape}] axis ${axis}`, () => {
        const out = maskedBatchNormTraining(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
            {axis, epsilon: eps}, maskTensor());
        const m = maskedMomentsRef(ref(shape, xData), axis, mask);
        expect(maxRelError(out.mean.dataSync(), m.mean)).toBeLessThan(1e-5);
        expect(maxRelError(out.variance.dataSync(), m.variance)).toBeLessThan(1e-5);
        // Masked positions are normalized too, with the same statistics (Keras normalizes the whole tensor).
        const y = normalizeRef(ref(shape, xData), axis, m.mean, m.variance, eps, gamma, beta);
        expect(maxRelError(out.y.dataSync(), y.data)).toBeLessThan(1e-5);
        expect(Array.from(out.r.dataSync())).toEqual(new Array(c).fill(1));
        expect(Array.from(out.d.dataSync())).toEqual(new Array(c).fill(0));
      });

      const w = Array.from(randomData(size(shape), 29));
      const loss = (f: (x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D) => tf.Tensor) => () => {
        const grads = tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(f(x, g as tf.Tensor1D, b as tf.Tensor1D), tf.tensor(w, shape))));
        return grads([tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta)])
            .map((t) => Array.from(t.dataSync()));
      };
      const differences = (f64Loss: (x: number[], g: number[], b: number[]) => number) => [
        centralDifferences((v) => f64Loss(v, gamma, beta), Array.from(xData)),
        centralDifferences((v) => f64Loss(Array.from(xData), v, beta), gamma),
        centralDifferences((v) => f64Loss(Array.from(xData), gamma, v), beta),
      ];

      it(`dx, dγ, dβ match central differences of the float64 reference for [${shape}] axis ${axis}`, () => {
        const actual = loss((x, g, b) => maskedBatchNormTraining(x, g, b, {axis, epsilon: eps}, maskTensor()).y)();
        const expected = differences((xs, g, b) => {
          const m = maskedMomentsRef(ref(shape, xs), axis, mask);
          return weightedSum(normalizeRef(ref(shape, xs), axis, m.mean, m.variance, eps, g, b).data, w);
        });
        actual.forEach((a, i) => expect(maxRelError(a, expected[i])).toBeLessThan(1e-4));
      });

      it(`renorm r, d from the masked moments; gradients with r, d constant for [${shape}] axis ${axis}`, () => {
        const renormMean = Array.from(randomData(c, 31, 0.3, 0.3));
        const renormStddev = Array.from(randomData(c, 37, 1.5, 0.3));
        const cfg = {axis, eps, momentum: 0.9, renormMomentum: 0.9, rmin: 0.9, rmax: 1.1, dmax: 0.2};
        const renorm = () => ({mean: tf.tensor1d(renormMean), stddev: tf.tensor1d(renormStddev),
          rmin: cfg.rmin, rmax: cfg.rmax, dmax: cfg.dmax});
        const state = {gamma, beta, movingMean: [], movingVariance: [], movingStddev: [], renormMean, renormStddev};
        const stepRef = (xs: ArrayLike<number>, g: number[], b: number[], fixed?: {r: number[]; d: number[]}) =>
          renormStepRef(ref(shape, xs), {...state, gamma: g, beta: b}, cfg, fixed,
              maskedMomentsRef(ref(shape, xs), axis, mask));
        const expected = stepRef(xData, gamma, beta);
        const out = maskedBatchNormTraining(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
            {axis, epsilon: eps, renorm: renorm()}, maskTensor());
        expect(maxRelError(out.r.dataSync(), expected.r)).toBeLessThan(1e-5);
        expect(maxRelError(out.d.dataSync(), expected.d)).toBeLessThan(1e-5);
        expect(maxRelError(out.y.dataSync(), expected.y.data)).toBeLessThan(1e-5);
        const actual = loss((x, g, b) =>
          maskedBatchNormTraining(x, g, b, {axis, epsilon: eps, renorm: renorm()}, maskTensor()).y)();
        const fixed = {r: expected.r, d: expected.d};
        const differenced = differences((xs, g, b) => weightedSum(stepRef(xs, g, b, fixed).y.data, w));
        actual.forEach((a, i) => expect(maxRelError(a, differenced[i])).toBeLessThan(1e-4));
      });
    }

    it('scale and center off: y = (x − μ)/√(σ² + ε) over masked moments', () => {
      const shape = [5, 4, 2];
      const xData = randomData(size(shape), 41, 1, 3);
      const mask = maskData(20, 43);
      const out = maskedBatchNormTraining(tf.tensor(xData, shape), null, null, {axis: 2, epsilon: 1e-3},
          tf.tensor(mask, [5, 4], 'bool'));
      const m = maskedMomentsRef(ref(shape, xData), 2, mask);
      expect(maxRelError(out.y.dataSync(), normalizeRef(ref(shape, xData), 2, m.mean, m.variance, 1e-3).data))
          .toBeLessThan(1e-5);
    });

    it('stays accurate when the mean dwarfs the spread (mean 1e4, spread 1, 30000 values)', () => {
      const shape = [100, 100, 3];
      const xData = randomData(size(shape), 47, 1e4, 1);
      const mask = maskData(100 * 100, 53);
      const out = maskedBatchNormTraining(tf.tensor(xData, shape), null, null, {axis: 2, epsilon: 1e-3},
          tf.tensor(mask, [100, 100], 'bool'));
      const m = maskedMomentsRef(ref(shape, xData), 2, mask);
      expect(maxRelError(out.mean.dataSync(), m.mean)).toBeLessThan(1e-6);
      expect(maxRelError(out.variance.dataSync(), m.variance)).toBeLessThan(1e-3);
      const y = normalizeRef(ref(shape, xData), 2, m.mean, m.variance, 1e-3);
      expect(maxRelError(out.y.dataSync(), y.data)).toBeLessThan(1e-3);
    });

    it('all positions masked gives μ = σ² = 0, as Keras (0 / (0 + 1e-7))', () => {
      const out = maskedBatchNormTraining(tf.tensor([[1, 2], [3, 4]]), null, null, {axis: 1, epsilon: 1e-3},
          tf.tensor([false, false], [2], 'bool'));
      expect(Array.from(out.mean.dataSync())).toEqual([0, 0]);
      expect(Array.from(out.variance.dataSync())).toEqual([0, 0]);
    });

    it('leaves no tensor behind, forward and backward, with and without renorm', () => {
      const x = tf.tensor(randomData(60, 59), [5, 4, 3]);
      const gamma = tf.ones([3]) as tf.Tensor1D;
      const mask = tf.tensor(maskData(20, 61), [5, 4], 'bool');
      const run = () => tf.tidy(() => {
        tf.grads((xs: tf.Tensor, g: tf.Tensor) => tf.sum(maskedBatchNormTraining(xs, g as tf.Tensor1D, null,
            {axis: 2, epsilon: 1e-3, renorm: {mean: tf.zeros([3]), stddev: tf.ones([3]), rmin: 0.5, rmax: 2, dmax: 1}},
            mask).y))([x, gamma]);
        tf.grads((xs: tf.Tensor) => tf.sum(maskedBatchNormTraining(xs, null, null, {axis: 2, epsilon: 1e-3}, mask).y))([x]);
      });
      run();
      const before = tf.memory().numTensors;
      run();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, gamma, mask]);
    });
  });
}

describe('checkMask and unmaskedCount', () => {
  const owner = "BatchNormLayer 'bn'";
  it.each([
    [[2, 4], [2, 4, 3], 2],
    [[2, 4], [2, 3, 4], 1],
    [[2], [2, 3], 1],
  ])('accepts mask %j for input %j with channel axis %d', (maskShape, inputShape, axis) => {
    expect(() => checkMask(owner, tf.zeros(maskShape, 'bool'), inputShape, axis)).not.toThrow();
  });

  it.each([
    [[2, 4, 1], [2, 4, 3], 2, /mask must have the input's shape without the channel axis 2, \[2, 4\] for input shape \[2, 4, 3\]; received mask shape \[2, 4, 1\]/],
    [[2], [2, 4, 3], 2, /\[2, 4\] for input shape \[2, 4, 3\]; received mask shape \[2\]/],
    [[2, 4], [2, 3, 4], 2, /\[2, 3\] for input shape \[2, 3, 4\]; received mask shape \[2, 4\]/],
    [[2, 3], [2, 3, 4], 1, /\[2, 4\] for input shape \[2, 3, 4\]; received mask shape \[2, 3\]/],
  ])('rejects mask %j for input %j with channel axis %d', (maskShape, inputShape, axis, message) => {
    let error: unknown;
    try {
      checkMask(owner, tf.zeros(maskShape, 'bool'), inputShape, axis);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NormalizationShapeError);
    expect((error as Error).message).toMatch(owner);
    expect((error as Error).message).toMatch(message);
  });

  it('rejects a mask that is not bool, naming the dtype', () => {
    expect(() => checkMask(owner, tf.ones([2, 4]), [2, 4, 3], 2))
        .toThrow(/BatchNormLayer 'bn': the mask must have dtype bool .* received dtype float32/);
  });

  it('counts the true positions', () => {
    expect(unmaskedCount(tf.tensor([[true, false, true], [true, true, false]], [2, 3], 'bool'))).toBe(4);
  });
});
