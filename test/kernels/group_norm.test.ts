import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {GROUP_NORM, GROUP_NORM_GRAD, groupNorm} from '../../src/kernels/group_norm';
import {runComposite} from '../../src/kernels/registry';
import {maxRelError, randomData, ref} from '../helpers/reference';
import {centralDifferences, groupNormRef, weightedSum} from '../helpers/variant_reference';

const CASES: Array<{shape: number[]; axis: number; groups: number}> = [
  {shape: [4, 6], axis: 1, groups: 3},
  {shape: [3, 5, 6], axis: -1, groups: 2},
  {shape: [3, 6, 5], axis: 1, groups: 3},
  {shape: [2, 3, 4, 8], axis: 3, groups: 4},
  {shape: [2, 8, 3, 4], axis: 1, groups: 2},
  {shape: [2, 2, 3, 2, 6], axis: -1, groups: 6},
  {shape: [2, 4, 2, 3, 2], axis: 1, groups: 1},
];

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const positive = (axis: number, rank: number) => axis < 0 ? axis + rank : axis;

describe('groupNorm op and kernels against a float64 reference', () => {
  for (const {shape, axis, groups} of CASES) {
    const a = positive(axis, shape.length);
    const c = shape[a];
    const xData = randomData(size(shape), 3 + shape.length, 2, 3);
    const gamma = Array.from(randomData(c, 5, 1, 0.4));
    const beta = Array.from(randomData(c, 7));
    const expected = groupNormRef(ref(shape, xData), a, groups, 1e-3, gamma, beta);

    it(`registered kernel: y, mean [N, G], variance [N, G] for shape [${shape}] axis ${axis} groups ${groups}`, () => {
      const out = groupNorm(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
          {axis, groups, epsilon: 1e-3});
      expect(out.mean.shape).toEqual([shape[0], groups]);
      expect(out.variance.shape).toEqual([shape[0], groups]);
      expect(maxRelError(out.y.dataSync(), expected.y.data)).toBeLessThan(1e-5);
      expect(maxRelError(out.mean.dataSync(), expected.mean.flat())).toBeLessThan(1e-5);
      expect(maxRelError(out.variance.dataSync(), expected.variance.flat())).toBeLessThan(1e-5);
    });

    it(`composite kernel agrees with the reference, shape [${shape}] axis ${axis}`, () => {
      const [y, mean, variance] = runComposite(GROUP_NORM,
          {x: tf.tensor(xData, shape), gamma: tf.tensor1d(gamma), beta: tf.tensor1d(beta)},
          {axis: a, groups, epsilon: 1e-3});
      expect(maxRelError(y.dataSync(), expected.y.data)).toBeLessThan(1e-5);
      expect(maxRelError(mean.dataSync(), expected.mean.flat())).toBeLessThan(1e-5);
      expect(maxRelError(variance.dataSync(), expected.variance.flat())).toBeLessThan(1e-5);
    });
  }

  it('gamma and beta may be null (scale and center off)', () => {
    const shape = [3, 4, 6];
    const xData = randomData(72, 9, -1, 2);
    const out = groupNorm(tf.tensor(xData, shape), null, null, {axis: -1, groups: -1, epsilon: 1e-5});
    expect(maxRelError(out.y.dataSync(), groupNormRef(ref(shape, xData), 2, -1, 1e-5).y.data)).toBeLessThan(1e-5);
  });
});

describe('GROUP_NORM gradients against central finite differences of the float64 reference', () => {
  for (const {shape, axis, groups} of [CASES[0], CASES[2], CASES[3], CASES[6]]) {
    const a = positive(axis, shape.length);
    const c = shape[a];
    const n = size(shape);
    const xData = Array.from(randomData(n, 11, 0.5, 1.5));
    const w = Array.from(randomData(n, 13));
    const gamma = Array.from(randomData(c, 15, 1, 0.3));
    const beta = Array.from(randomData(c, 17));
    const eps = 1e-3;
    const loss = (xs: number[], g: number[], b: number[]) =>
      weightedSum(groupNormRef(ref(shape, xs), a, groups, eps, g, b).y.data, w);
    const expected = {
      dx: centralDifferences((v) => loss(v, gamma, beta), xData),
      dGamma: centralDifferences((v) => loss(xData, v, beta), gamma),
      dBeta: centralDifferences((v) => loss(xData, gamma, v), beta),
    };

    it(`tf.grads through the op (registered gradient), shape [${shape}] axis ${axis} groups ${groups}`, () => {
      const wT = tf.tensor(w, shape);
      const f = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(groupNorm(x, g as tf.Tensor1D, b as tf.Tensor1D, {axis, groups, epsilon: eps}).y, wT));
      const [dx, dGamma, dBeta] = tf.grads(f)([tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta)]);
      expect(maxRelError(dx.dataSync(), expected.dx)).toBeLessThan(2e-3);
      expect(maxRelError(dGamma.dataSync(), expected.dGamma)).toBeLessThan(2e-3);
      expect(maxRelError(dBeta.dataSync(), expected.dBeta)).toBeLessThan(2e-3);
    });

    it(`composite GROUP_NORM_GRAD kernel, shape [${shape}] axis ${axis} groups ${groups}`, () => {
      const x = tf.tensor(xData, shape);
      const ref64 = groupNormRef(ref(shape, xData), a, groups, eps, gamma, beta);
      const [dx, dGamma, dBeta] = runComposite(GROUP_NORM_GRAD, {
        dy: tf.tensor(w, shape), x, gamma: tf.tensor1d(gamma),
        mean: tf.tensor2d(ref64.mean), variance: tf.tensor2d(ref64.variance),
      }, {axis: a, groups, epsilon: eps});
      expect(maxRelError(dx.dataSync(), expected.dx)).toBeLessThan(2e-3);
      expect(maxRelError(dGamma.dataSync(), expected.dGamma)).toBeLessThan(2e-3);
      expect(maxRelError(dBeta.dataSync(), expected.dBeta)).toBeLessThan(2e-3);
    });
  }
});

describe('groupNorm op errors', () => {
  const x = tf.zeros([2, 3, 12]);
  const bad: Array<[Partial<{axis: number; groups: number}>, RegExp]> = [
    [{groups: 5}, /groupNorm: the number of channels \(12\) must be a multiple of the number of groups \(5\)/],
    [{groups: 16}, /groupNorm: number of groups \(16\) cannot be more than the number of channels \(12\)/],
    [{groups: 0}, /groupNorm: groups must be a positive integer or -1; received 0/],
    [{groups: -2}, /received -2/],
    [{groups: 1.5}, /received 1\.5/],
    [{axis: 0}, /groupNorm: axis 0 must name a non-batch axis of an input of rank >= 2; received shape \[2, 3, 12\]/],
    [{axis: 3}, /axis 3 must name a non-batch axis/],
  ];
  for (const [args, message] of bad) {
    it(`rejects ${JSON.stringify(args)}`, () => {
      expect(() => groupNorm(x, null, null, {axis: -1, groups: 4, epsilon: 1e-3, ...args})).toThrow(message);
    });
  }
});

describe('groupNorm resources', () => {
  it('tf.memory().numTensors stays flat over 100 forward and backward steps', () => {
    const x = tf.tensor(randomData(2 * 4 * 4 * 8, 3), [2, 4, 4, 8]);
    const gamma = tf.ones([8]);
    const step = () => tf.tidy(() => {
      tf.grads((xi: tf.Tensor, g: tf.Tensor) =>
        tf.sum(tf.square(groupNorm(xi, g as tf.Tensor1D, null, {axis: -1, groups: 2, epsilon: 1e-3}).y)))([x, gamma]);
    });
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) step();
    expect(tf.memory().numTensors).toBe(before);
  });
});
