/**
 * The fused cpu kernels (src/kernels/cpu) against the composite kernels, float64
 * references and finite differences; statistics of badly centred inputs; leaks.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, batchNormTraining, channelScaleOffset, groupNormOp} from '../../src';
import {batchNormTrainingConfig} from '../../src/kernels/cpu/batch_norm_training';
import {batchNormTrainingGradConfig} from '../../src/kernels/cpu/batch_norm_training_grad';
import {channelScaleOffsetConfig} from '../../src/kernels/cpu/channel_scale_offset';
import {groupNormConfig} from '../../src/kernels/cpu/group_norm';
import {groupNormGradConfig} from '../../src/kernels/cpu/group_norm_grad';
import {compositeKernel} from '../../src/kernels/registry';
import {
  ALL_CASES, expectAccurateStatistics, expectNoLeaks, LEAK_LAYERS, OFFSET_SHAPES, outputsOf,
} from '../helpers/kernel_cases';
import {channelMoments, channelOf, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {centralDifferences, groupNormRef, weightedSum} from '../helpers/variant_reference';

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const fusedKernel = (name: string) => (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) =>
  tf.engine().runKernel(name, inputs, attrs) as tf.Tensor[];

describe('fused cpu kernels are registered on import', () => {
  const configs = [batchNormTrainingConfig, batchNormTrainingGradConfig, channelScaleOffsetConfig, groupNormConfig,
    groupNormGradConfig];
  it.each(configs.map((c) => [c.kernelName, c]))('%s runs the fused kernel on cpu', (name, config) => {
    expect(tf.getKernel(name as string, 'cpu')?.kernelFunc).toBe((config as tf.KernelConfig).kernelFunc);
  });
});

describe('fused cpu kernels agree with the composite kernels (<= 1e-5 relative)', () => {
  for (const c of ALL_CASES) {
    it(c.label, () => {
      const fused = outputsOf(c, fusedKernel(c.kernel));
      const composite = outputsOf(c, compositeKernel(c.kernel));
      expect(fused.length).toBe(composite.length);
      fused.forEach((values, i) => {
        expect(values.length).toBe(composite[i].length);
        expect(maxRelError(values, composite[i])).toBeLessThanOrEqual(1e-5);
      });
    });
  }
});

describe('fused forward kernels against float64 references', () => {
  const shapes: Array<[number[], number]> = [[[5, 4], 1], [[3, 4, 5, 6], 3], [[3, 6, 4, 5], 1], [[2, 3, 4, 2, 5], 2]];
  for (const [shape, axis] of shapes) {
    const c = shape[axis];
    const xData = randomData(size(shape), 41, -1, 2);
    const gamma = Array.from(randomData(c, 43, 1, 0.3));
    const beta = Array.from(randomData(c, 47));

    it(`batch norm y, mean, variance for [${shape}] axis ${axis}`, () => {
      const out = batchNormTraining(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
          {axis, epsilon: 1e-3});
      const m = channelMoments(ref(shape, xData), axis);
      expect(maxRelError(out.mean.dataSync(), m.mean)).toBeLessThan(1e-6);
      expect(maxRelError(out.variance.dataSync(), m.variance)).toBeLessThan(1e-6);
      const y = normalizeRef(ref(shape, xData), axis, m.mean, m.variance, 1e-3, gamma, beta);
      expect(maxRelError(out.y.dataSync(), y.data)).toBeLessThan(1e-6);
      tf.dispose([out.y, out.mean, out.variance, out.r, out.d]);
    });

    it(`batch renorm r, d and y (clipped on some channels) for [${shape}] axis ${axis}`, () => {
      const renormMean = Array.from(randomData(c, 53, -1, 0.5));
      const renormStddev = Array.from(randomData(c, 59, 2, 0.5));
      const [rmin, rmax, dmax] = [0.95, 1.05, 0.2];
      const out = batchNormTraining(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta), {
        axis, epsilon: 1e-3,
        renorm: {mean: tf.tensor1d(renormMean), stddev: tf.tensor1d(renormStddev), rmin, rmax, dmax},
      });
      const m = channelMoments(ref(shape, xData), axis);
      const std = m.variance.map((v) => Math.sqrt(v + 1e-3));
      const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
      const r = std.map((s, k) => clip(s / renormStddev[k], rmin, rmax));
      const d = m.mean.map((mu, k) => clip((mu - renormMean[k]) / renormStddev[k], -dmax, dmax));
      expect(maxRelError(out.r.dataSync(), r)).toBeLessThan(1e-6);
      expect(maxRelError(out.d.dataSync(), d)).toBeLessThan(1e-6);
      const y = xData.map((v, i) => {
        const k = channelOf(shape, axis, i);
        return gamma[k] * ((v - m.mean[k]) / std[k] * r[k] + d[k]) + beta[k];
      });
      expect(maxRelError(out.y.dataSync(), y)).toBeLessThan(1e-6);
      tf.dispose([out.y, out.mean, out.variance, out.r, out.d]);
    });

    it.each([c % 2 === 0 ? 2 : 1, c])(`group norm with %d groups: y, mean, variance for [${shape}] axis ${axis}`,
        (groups) => {
      const out = groupNormOp(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
          {axis, groups, epsilon: 1e-3});
      const expected = groupNormRef(ref(shape, xData), axis, groups, 1e-3, gamma, beta);
      expect(maxRelError(out.mean.dataSync(), expected.mean.flat())).toBeLessThan(1e-6);
      expect(maxRelError(out.variance.dataSync(), expected.variance.flat())).toBeLessThan(1e-6);
      expect(maxRelError(out.y.dataSync(), expected.y.data)).toBeLessThan(1e-6);
      tf.dispose([out.y, out.mean, out.variance]);
    });
  }
});

describe('gradients of the fused kernels against float64 central finite differences', () => {
  const shapes: Array<[number[], number]> = [[[5, 3], 1], [[2, 3, 2, 4], 3], [[2, 4, 3, 2], 1]];
  const eps = 1e-3;
  for (const [shape, axis] of shapes) {
    const c = shape[axis];
    const n = size(shape);
    const xData = Array.from(randomData(n, 61, 0.5, 1.5));
    const w = Array.from(randomData(n, 67));
    const gamma = Array.from(randomData(c, 71, 1, 0.3));
    const beta = Array.from(randomData(c, 73));
    const wT = () => tf.tensor(w, shape);
    /** Gradients of Σ w·f(x, γ, β) from the registered gradient, as arrays. */
    const grads = (f: (x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D) => tf.Tensor) => {
      const out = tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(f(x, g as tf.Tensor1D, b as tf.Tensor1D), wT())))(
          [tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta)]);
      return out.map((t) => Array.from(t.dataSync()));
    };
    /** Central differences of the float64 loss with respect to x, γ and β. */
    const differences = (loss: (x: number[], g: number[], b: number[]) => number) => [
      centralDifferences((v) => loss(v, gamma, beta), xData),
      centralDifferences((v) => loss(xData, v, beta), gamma),
      centralDifferences((v) => loss(xData, gamma, v), beta),
    ];
    const expectClose = (actual: number[][], expected: number[][]) =>
      actual.forEach((a, i) => expect(maxRelError(a, expected[i])).toBeLessThan(1e-4));

    it(`batch norm dx, dγ, dβ for [${shape}] axis ${axis}`, () => {
      const actual = grads((x, g, b) => batchNormTraining(x, g, b, {axis, epsilon: eps}).y);
      expectClose(actual, differences((xs, g, b) => {
        const m = channelMoments(ref(shape, xs), axis);
        return weightedSum(normalizeRef(ref(shape, xs), axis, m.mean, m.variance, eps, g, b).data, w);
      }));
    });

    it(`batch renorm dx, dγ, dβ with r and d held constant for [${shape}] axis ${axis}`, () => {
      const renorm = () => ({mean: tf.tensor1d(randomData(c, 79, 0.3, 0.3)), stddev: tf.tensor1d(randomData(c, 83, 1.5, 0.3)),
        rmin: 0.9, rmax: 1.1, dmax: 0.2});
      const fixed = batchNormTraining(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta),
          {axis, epsilon: eps, renorm: renorm()});
      const r = Array.from(fixed.r.dataSync());
      const d = Array.from(fixed.d.dataSync());
      const actual = grads((x, g, b) => batchNormTraining(x, g, b, {axis, epsilon: eps, renorm: renorm()}).y);
      expectClose(actual, differences((xs, g, b) => {
        const m = channelMoments(ref(shape, xs), axis);
        const y = xs.map((v, i) => {
          const k = channelOf(shape, axis, i);
          return g[k] * ((v - m.mean[k]) / Math.sqrt(m.variance[k] + eps) * r[k] + d[k]) + b[k];
        });
        return weightedSum(y, w);
      }));
    });

    it.each([c % 2 === 0 ? 2 : 1, c])(`group norm with %d groups: dx, dγ, dβ for [${shape}] axis ${axis}`,
        (groups) => {
      const actual = grads((x, g, b) => groupNormOp(x, g, b, {axis, groups, epsilon: eps}).y);
      expectClose(actual, differences((xs, g, b) =>
        weightedSum(groupNormRef(ref(shape, xs), axis, groups, eps, g, b).y.data, w)));
    });

    it(`channel scale-offset dx, dscale, doffset for [${shape}] axis ${axis}`, () => {
      const actual = grads((x, g, b) => channelScaleOffset(x, g, b, axis));
      expectClose(actual, differences((xs, g, b) =>
        weightedSum(xs.map((v, i) => v * g[channelOf(shape, axis, i)] + b[channelOf(shape, axis, i)]), w)));
    });
  }
});

describe('statistics of inputs with mean 1e4 and unit variance (within 1e-3 of float64)', () => {
  it.each(OFFSET_SHAPES)('batch norm and group norm, shape %j axis %d', (shape, axis) =>
    expectAccurateStatistics(shape, axis));
});

describe('no tensor leaks over many training and inference steps (cpu, fused kernels)', () => {
  it.each(LEAK_LAYERS)('%s', (_name, make) => expectNoLeaks(make()));

  it('tfjs-layers model training with our layer (trainOnBatch) keeps the tensor count', async () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 6, inputShape: [5]}), new BatchNormLayer(), tfl.layers.dense({units: 1}),
    ]});
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    const x = tf.tensor(randomData(40, 103), [8, 5]);
    const y = tf.tensor(randomData(8, 107), [8, 1]);
    await model.trainOnBatch(x, y);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 30; i++) await model.trainOnBatch(x, y);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    tf.dispose([x, y]);
  });
});
