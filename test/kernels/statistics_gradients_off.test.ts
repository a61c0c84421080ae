/**
 * batchNormTraining's `statisticsGradients: false` (the layers' path, issue 13
 * item 5): the outputs are the float64 reference's, y's gradients (x, gamma,
 * beta; r and d constant) match float64 finite differences and those of the
 * default call, a gradient taken through the statistics throws an error
 * naming the option on both paths, a bad value fails early, and nothing leaks;
 * the same for the groupNorm op (GroupNormLayer's path).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {batchNormTraining, groupNormOp as groupNorm, NormalizationConfigError} from '../../src';
import {useBackend} from '../helpers/backends';
import {channelMoments, channelOf, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {centralDifferences, weightedSum} from '../helpers/variant_reference';

const EPS = 1e-3;
const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const values = (t: tf.Tensor) => Array.from(t.dataSync());

const CASES: Array<[number[], number]> = [[[6, 5], 1], [[2, 4, 3, 5], 3], [[3, 5, 2, 3], 1]];
const [RMIN, RMAX, DMAX] = [0.9, 1.1, 0.3];

for (const backend of ['cpu', 'wasm']) {
  describe(`batchNormTraining with statisticsGradients: false on ${backend}`, () => {
    useBackend(backend);

    for (const [shape, axis] of CASES) {
      const c = shape[axis];
      const xData = Array.from(randomData(size(shape), 31, 0.5, 1.5));
      const gamma = Array.from(randomData(c, 47, 1, 0.3));
      const beta = Array.from(randomData(c, 53));
      const wy = Array.from(randomData(size(shape), 41));
      const renormMean = Array.from(randomData(c, 59, 0.5, 0.5));
      const renormStddev = Array.from(randomData(c, 61, 1.5, 0.4)).map(Math.abs);
      const at = `[${shape}] axis ${axis}`;

      // r and d from the batch statistics of xData, float64 (Ioffe 2017), held constant for y's gradient.
      const batch = channelMoments(ref(shape, xData), axis);
      const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
      const rRef = batch.variance.map((v, k) => clip(Math.sqrt(v + EPS) / renormStddev[k], RMIN, RMAX));
      const dRef = batch.mean.map((v, k) => clip((v - renormMean[k]) / renormStddev[k], -DMAX, DMAX));
      const yRef = (xs: number[], g: number[], b: number[]) => {
        const m = channelMoments(ref(shape, xs), axis);
        const xHat = normalizeRef(ref(shape, xs), axis, m.mean, m.variance, EPS).data;
        return Array.from(xHat, (v, i) => {
          const k = channelOf(shape, axis, i);
          return g[k] * (v * rRef[k] + dRef[k]) + b[k];
        });
      };
      const run = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => batchNormTraining(x, g as tf.Tensor1D, b as tf.Tensor1D,
          {axis, epsilon: EPS, statisticsGradients: false, renorm: {mean: tf.tensor1d(renormMean),
            stddev: tf.tensor1d(renormStddev), rmin: RMIN, rmax: RMAX, dmax: DMAX}});

      it(`outputs match the float64 reference, ${at}`, () => {
        const out = tf.tidy(() => {
          const o = run(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta));
          return [o.y, o.mean, o.variance, o.r, o.d].map(values);
        });
        const expected = [yRef(xData, gamma, beta), batch.mean, batch.variance, rRef, dRef];
        out.forEach((v, i) => expect(maxRelError(v, expected[i])).toBeLessThan(1e-5));
      });

      it(`y's gradients (r and d constant) match finite differences, ${at}`, () => {
        const grads = tf.tidy(() => tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(run(x, g, b).y, tf.tensor(wy, shape))))(
            [tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta)]).map(values));
        const expected = [
          centralDifferences((v) => weightedSum(yRef(v, gamma, beta), wy), xData),
          centralDifferences((v) => weightedSum(yRef(xData, v, beta), wy), gamma),
          centralDifferences((v) => weightedSum(yRef(xData, gamma, v), wy), beta),
        ];
        grads.forEach((grad, i) => expect(maxRelError(grad, expected[i])).toBeLessThan(1e-4));
      });
    }

    const statisticGradient = (statistic: 'mean' | 'variance') => tf.tidy(() => values(tf.grad((x: tf.Tensor) =>
      tf.sum(batchNormTraining(x, null, null, {axis: 1, epsilon: EPS, statisticsGradients: false})[statistic]))(
        tf.tensor(randomData(12, 67), [4, 3]))));
    // (No leak check: a tf.grad that throws keeps the tensors its tape saved, tfjs's own ops' too.)
    it('a gradient through a statistic throws, naming the option (cpu\'s fused kernel skips them too)', () => {
      for (const statistic of ['mean', 'variance'] as const) {
        expect(() => statisticGradient(statistic)).toThrow(NormalizationConfigError);
        expect(() => statisticGradient(statistic)).toThrow(
            new RegExp(`batchNormTraining: a gradient was taken through its '${statistic}' output, computed with ` +
              'statisticsGradients: false'));
      }
      for (const statistic of ['r', 'd'] as const) {
        const renorm = {mean: tf.zeros([3]) as tf.Tensor1D, stddev: tf.ones([3]) as tf.Tensor1D, rmin: 0.5, rmax: 2, dmax: 1};
        expect(() => tf.tidy(() => tf.grad((x: tf.Tensor) => tf.sum(batchNormTraining(x, null, null,
            {axis: 1, epsilon: EPS, statisticsGradients: false, renorm})[statistic]))(
          tf.tensor(randomData(12, 67), [4, 3])))).toThrow(/statisticsGradients: false/);
      }
    });

    it('the statistics and y\'s gradients equal those of the default call', () => {
      const x = tf.tensor(randomData(60, 73, 0.5, 2), [4, 5, 3]);
      const renorm = {mean: tf.fill([3], 0.4) as tf.Tensor1D, stddev: tf.fill([3], 1.7) as tf.Tensor1D,
        rmin: 0.8, rmax: 1.2, dmax: 0.3};
      const outputs = (statisticsGradients: boolean) => tf.tidy(() => {
        const args = {axis: 2, epsilon: EPS, statisticsGradients, renorm};
        const o = batchNormTraining(x, null, null, args);
        const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.square(batchNormTraining(xi, null, null, args).y)))(x);
        return [o.y, o.mean, o.variance, o.r, o.d, dx].map(values);
      });
      expect(outputs(false)).toEqual(outputs(true));
      tf.dispose([x, renorm.mean, renorm.stddev]);
    });

    it('no tensor leaks: outputs belong to the caller\'s scope, gradients free their saved tensors', () => {
      const x = tf.tensor(randomData(48, 71), [4, 3, 4]);
      const gamma = tf.ones([4]) as tf.Tensor1D;
      const renorm = {mean: tf.zeros([4]) as tf.Tensor1D, stddev: tf.ones([4]) as tf.Tensor1D, rmin: 0.5, rmax: 2, dmax: 1};
      const args = {axis: -1, epsilon: EPS, statisticsGradients: false, renorm};
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) {
        tf.tidy(() => {
          tf.grads((xi: tf.Tensor, g: tf.Tensor) => tf.sum(batchNormTraining(xi, g as tf.Tensor1D, null, args).y))([x, gamma]);
        });
        tf.tidy(() => { batchNormTraining(x, gamma, null, args); });
        const out = batchNormTraining(x, null, null, args);
        expect(tf.memory().numTensors).toBe(before + 5);
        tf.dispose([out.y, out.mean, out.variance, out.r, out.d]);
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, gamma, renorm.mean, renorm.stddev]);
    });

    it('a value other than true or false fails early, naming the op and the field', () => {
      const x = tf.ones([2, 3]);
      const before = tf.memory().numTensors;
      const call = () => batchNormTraining(x, null, null,
          {axis: 1, epsilon: EPS, statisticsGradients: 'no' as unknown as boolean});
      expect(call).toThrow(NormalizationConfigError);
      expect(call).toThrow(/batchNormTraining: statisticsGradients must be true or false; received "no"/);
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
    });
  });
}

for (const backend of ['cpu', 'wasm']) {
  describe(`groupNorm with statisticsGradients: false (GroupNormLayer's path) on ${backend}`, () => {
    useBackend(backend);
    const shape = [3, 4, 2, 6];
    const xData = randomData(size(shape), 83, 1, 2);
    const wy = randomData(size(shape), 89);
    const args = (statisticsGradients: boolean) => ({axis: -1, groups: 3, epsilon: 1e-3, statisticsGradients});

    it('outputs and y\'s gradients equal those of the default call (which the float64 tests above check)', () => {
      const run = (statisticsGradients: boolean) => tf.tidy(() => {
        const x = tf.tensor(xData, shape);
        const gamma = tf.tensor1d(randomData(6, 97, 1, 0.3));
        const beta = tf.tensor1d(randomData(6, 101));
        const o = groupNorm(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, args(statisticsGradients));
        const grads = tf.grads((xi: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(
            groupNorm(xi, g as tf.Tensor1D, b as tf.Tensor1D, args(statisticsGradients)).y, tf.tensor(wy, shape))))(
          [x, gamma, beta]);
        return [o.y, o.mean, o.variance, ...grads].map((t) => Array.from(t.dataSync()));
      });
      expect(run(false)).toEqual(run(true));
    });

    it('a gradient through the mean or variance throws, naming the option', () => {
      const x = tf.tensor(xData, shape);
      for (const statistic of ['mean', 'variance'] as const) {
        expect(() => tf.tidy(() => tf.grad((xi: tf.Tensor) =>
          tf.sum(groupNorm(xi, null, null, args(false))[statistic]))(x)))
            .toThrow(new RegExp(`groupNorm: a gradient was taken through its '${statistic}' output, computed with ` +
              'statisticsGradients: false'));
      }
      x.dispose();
    });

    it('no tensor leaks, and a value other than true or false fails early', () => {
      const x = tf.tensor(xData, shape);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        tf.tidy(() => { tf.grad((xi: tf.Tensor) => tf.sum(groupNorm(xi, null, null, args(false)).y))(x); });
        const out = groupNorm(x, null, null, args(false));
        expect(tf.memory().numTensors).toBe(before + 3);
        tf.dispose([out.y, out.mean, out.variance]);
      }
      expect(tf.memory().numTensors).toBe(before);
      expect(() => groupNorm(x, null, null, {...args(false), statisticsGradients: 1 as unknown as boolean}))
          .toThrow(/groupNorm: statisticsGradients must be true or false; received 1/);
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
    });
  });
}
