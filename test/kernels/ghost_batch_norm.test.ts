/**
 * The ghostBatchNormTraining op (issue 15): cpu's fused kernel, which walks
 * ghost batches in place, and the composite (wasm), against a float64
 * reference written from tf.keras 2.x's reshape ([B, ...] → [v, B/v, ...]:
 * sample i is in ghost batch i mod B/v), their gradients against finite
 * differences, the absence of a transposed copy (no Transpose kernel on either
 * path; on cpu a step's peak bytes equal plain batch norm's), its errors, and
 * its memory.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {batchNormTraining, ghostBatchNormTraining, NormalizationConfigError, NormalizationShapeError} from '../../src';
import {useBackend} from '../helpers/backends';
import {channelOf, maxRelError, randomData} from '../helpers/reference';
import {centralDifferences, weightedSum} from '../helpers/variant_reference';

const EPS = 1e-3;
const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const values = (t: tf.Tensor) => Array.from(t.dataSync());
const RENORM = {rmin: 0.7, rmax: 1.3, dmax: 0.4};

interface Case {shape: number[]; axis: number; v: number}
const CASES: Case[] = [
  {shape: [8, 3], axis: 1, v: 2},
  {shape: [6, 2, 3, 4], axis: 3, v: 2},
  {shape: [6, 2, 3, 4], axis: -1, v: 3},
  {shape: [4, 3, 2, 2], axis: 1, v: 2},
  {shape: [6, 2, 3, 2], axis: 2, v: 3},
  {shape: [4, 2, 5], axis: 2, v: 1},
];

/** Float64 ghost batch normalization as tf.keras 2.x computes it (see src/kernels/ghost_batch_norm.ts). */
function ghostReference(x: number[], {shape, axis, v}: Case, gamma: number[], beta: number[],
    renorm?: {mean: number[]; stddev: number[]}) {
  const resolved = axis < 0 ? shape.length + axis : axis;
  const channels = shape[resolved];
  const ghosts = shape[0] / v;
  const perSample = size(shape) / shape[0];
  const key = (i: number) => (Math.floor(i / perSample) % ghosts) * channels + channelOf(shape, resolved, i);
  const sum = new Array(ghosts * channels).fill(0);
  const count = new Array(ghosts * channels).fill(0);
  x.forEach((value, i) => { sum[key(i)] += value; count[key(i)]++; });
  const ghostMean = sum.map((s, k) => s / count[k]);
  const squares = new Array(ghosts * channels).fill(0);
  x.forEach((value, i) => { squares[key(i)] += (value - ghostMean[key(i)]) ** 2; });
  const ghostVariance = squares.map((s, k) => s / count[k]);
  const average = (perGhost: number[]) => Array.from({length: channels}, (_, c) =>
    perGhost.filter((_, k) => k % channels === c).reduce((a, b) => a + b, 0) / ghosts);
  const mean = average(ghostMean);
  const variance = average(ghostVariance);
  const clip = (value: number, lo: number, hi: number) => Math.min(Math.max(value, lo), hi);
  const s = renorm?.stddev.map((value) => Math.max(value, Math.sqrt(EPS)));
  const r = mean.map((_, c) => renorm == null ? 1 : clip(Math.sqrt(variance[c] + EPS) / s![c], RENORM.rmin, RENORM.rmax));
  const d = mean.map((m, c) => renorm == null ? 0 : clip((m - renorm.mean[c]) / s![c], -RENORM.dmax, RENORM.dmax));
  const y = x.map((value, i) => {
    const c = channelOf(shape, resolved, i);
    const k = key(i);
    return gamma[c] * ((value - ghostMean[k]) / Math.sqrt(ghostVariance[k] + EPS) * r[c] + d[c]) + beta[c];
  });
  return {y, mean, variance, r, d};
}

for (const backend of ['cpu', 'wasm']) {
  describe(`ghostBatchNormTraining on ${backend} (${backend === 'cpu' ? 'fused kernel' : 'composite'})`, () => {
    useBackend(backend);

    for (const testCase of CASES) {
      for (const withRenorm of [false, true]) {
        const {shape, axis, v} = testCase;
        const channels = shape[axis < 0 ? shape.length + axis : axis];
        // Samples differ in mean and spread, so that the ghost batches' statistics differ.
        const perSample = size(shape) / shape[0];
        const xData = Array.from(randomData(size(shape), 11, 0.4, 1.2),
            (value, i) => value * (1 + 0.5 * (Math.floor(i / perSample) % 3)) + 0.2 * Math.floor(i / perSample));
        const gamma = Array.from(randomData(channels, 13, 1, 0.3));
        const beta = Array.from(randomData(channels, 17));
        const renorm = withRenorm ? {mean: Array.from(randomData(channels, 19, 0.5, 0.5)),
          stddev: Array.from(randomData(channels, 23, 1.4, 0.3), Math.abs)} : undefined;
        const wy = Array.from(randomData(size(shape), 29));
        const at = `[${shape}] axis ${axis} v ${v}${withRenorm ? ' with renorm' : ''}`;
        const run = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => ghostBatchNormTraining(x, g as tf.Tensor1D,
            b as tf.Tensor1D, {axis, epsilon: EPS, virtualBatchSize: v, renorm: renorm == null ? undefined : {
              mean: tf.tensor1d(renorm.mean), stddev: tf.tensor1d(renorm.stddev), ...RENORM}});

        it(`y, the averaged statistics, r and d match the float64 reference, ${at}`, () => {
          const expected = ghostReference(xData, testCase, gamma, beta, renorm);
          const out = tf.tidy(() => {
            const o = run(tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta));
            return [o.y, o.mean, o.variance, o.r, o.d].map(values);
          });
          [expected.y, expected.mean, expected.variance, expected.r, expected.d]
              .forEach((reference, k) => expect(maxRelError(out[k], reference)).toBeLessThan(2e-5));
        });

        it(`dx, dγ, dβ (r and d constant) match finite differences, ${at}`, () => {
          // y with xs's ghost statistics and r, d held at xData's values, as Keras's stop_gradient does.
          const fixed = ghostReference(xData, testCase, gamma, beta, renorm);
          const resolved = axis < 0 ? shape.length + axis : axis;
          const loss = (xs: number[], g: number[], b: number[]) => {
            const normalized = ghostReference(xs, testCase, g.map(() => 1), g.map(() => 0)).y;
            return weightedSum(normalized.map((xHat, i) => {
              const c = channelOf(shape, resolved, i);
              return g[c] * (xHat * fixed.r[c] + fixed.d[c]) + b[c];
            }), wy);
          };
          const grads = tf.tidy(() => tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(run(x, g, b).y, tf.tensor(wy, shape))))(
            [tf.tensor(xData, shape), tf.tensor1d(gamma), tf.tensor1d(beta)]).map(values));
          const expected = [
            centralDifferences((xs) => loss(xs, gamma, beta), xData),
            centralDifferences((g) => loss(xData, g, beta), gamma),
            centralDifferences((b) => loss(xData, gamma, b), beta),
          ];
          grads.forEach((grad, k) => expect(maxRelError(grad, expected[k])).toBeLessThan(2e-4));
        });
      }
    }

    it('a channels-last training step runs no Transpose or Tile kernel (no copy of x rearranged)', async () => {
      const x = tf.tensor(randomData(16 * 8 * 8 * 16, 47), [16, 8, 8, 16]);
      const dy = tf.tensor(randomData(x.size, 53), x.shape);
      const gamma = tf.ones([16]) as tf.Tensor1D;
      const renorm = {mean: tf.zeros([16]) as tf.Tensor1D, stddev: tf.ones([16]) as tf.Tensor1D, ...RENORM};
      const profile = await tf.profile(() => tf.tidy(() => {
        tf.engine().gradients(() => ghostBatchNormTraining(x, gamma, null,
            {axis: -1, epsilon: EPS, virtualBatchSize: 4, renorm}).y, [x, gamma], dy);
      }));
      expect(profile.kernels.length).toBeGreaterThan(0);
      expect(profile.kernels.filter((kernel) => /Transpose|Tile/.test(kernel.name)).map((kernel) => kernel.name))
          .toEqual([]);
      tf.dispose([x, dy, gamma, renorm.mean, renorm.stddev]);
    });

    it('a gradient through a statistic throws: only y carries one', () => {
      const x = tf.tensor(randomData(24, 31), [4, 6]);
      const call = () => tf.tidy(() => tf.grad((xi: tf.Tensor) =>
        tf.sum(ghostBatchNormTraining(xi, null, null, {axis: 1, epsilon: EPS, virtualBatchSize: 2}).mean))(x));
      expect(call).toThrow(NormalizationConfigError);
      expect(call).toThrow(/ghostBatchNormTraining: a gradient was taken through its 'mean' output, which carries no gradient/);
      x.dispose();
    });

    it('bad arguments fail before anything runs, naming the op, the argument and the value', () => {
      const x = tf.ones([6, 3]);
      const wrongGamma = tf.ones([4]) as tf.Tensor1D;
      const before = tf.memory().numTensors;
      const call = (virtualBatchSize: number) => () =>
        ghostBatchNormTraining(x, null, null, {axis: 1, epsilon: EPS, virtualBatchSize});
      expect(call(4)).toThrow(NormalizationShapeError);
      expect(call(4)).toThrow(/ghostBatchNormTraining: virtualBatchSize 4 must divide the training batch size; received a batch of 6/);
      expect(call(2.5)).toThrow(NormalizationConfigError);
      expect(call(2.5)).toThrow(/ghostBatchNormTraining: virtualBatchSize must be an integer >= 1; received 2.5/);
      expect(call(0)).toThrow(/received 0/);
      expect(call('8' as unknown as number)).toThrow(/received "8"/);
      expect(call(1)).toThrow(/holds 1 value per channel/);
      expect(() => ghostBatchNormTraining(x, wrongGamma, null, {axis: 1, epsilon: EPS, virtualBatchSize: 2}))
          .toThrow(/ghostBatchNormTraining: gamma must have shape \[3\]/);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, wrongGamma]);
    });

    it('no tensor leaks: forward alone and with its gradients', () => {
      const x = tf.tensor(randomData(96, 37), [8, 2, 2, 3]);
      const gamma = tf.ones([3]) as tf.Tensor1D;
      const renorm = {mean: tf.zeros([3]) as tf.Tensor1D, stddev: tf.ones([3]) as tf.Tensor1D, ...RENORM};
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        tf.tidy(() => {
          tf.grads((xi: tf.Tensor, g: tf.Tensor) => tf.sum(ghostBatchNormTraining(xi, g as tf.Tensor1D, null,
              {axis: -1, epsilon: EPS, virtualBatchSize: 4, renorm}).y))([x, gamma]);
        });
        const out = ghostBatchNormTraining(x, null, null, {axis: -1, epsilon: EPS, virtualBatchSize: 2});
        expect(tf.memory().numTensors).toBe(before + 5);
        tf.dispose([out.y, out.mean, out.variance, out.r, out.d]);
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, gamma, renorm.mean, renorm.stddev]);
    });
  });
}

describe('ghostBatchNormTraining on cpu walks ghost batches in place', () => {
  useBackend('cpu');

  it('a channels-last training step peaks at the bytes of plain batch norm\'s (no transposed copy)', async () => {
    const x = tf.tensor(randomData(16 * 8 * 8 * 16, 41), [16, 8, 8, 16]);
    const dy = tf.tensor(randomData(x.size, 43), x.shape);
    const gamma = tf.ones([16]) as tf.Tensor1D;
    const peak = async (forward: (xi: tf.Tensor, g: tf.Tensor1D) => tf.Tensor) => (await tf.profile(() => {
      const {value, grads} = tf.engine().gradients(() => forward(x, gamma), [x, gamma], dy);
      tf.dispose([value, ...grads]);
    })).peakBytes;
    const plain = await peak((xi, g) => batchNormTraining(xi, g, null, {axis: -1, epsilon: EPS, statisticsGradients: false}).y);
    const ghost = await peak((xi, g) => ghostBatchNormTraining(xi, g, null, {axis: -1, epsilon: EPS, virtualBatchSize: 4}).y);
    // Per-ghost-batch statistics add 4·16 floats; a transposed copy of x would add 16 KiB·4 = 64 KiB or more.
    expect(ghost - plain).toBeLessThan(4 * 16 * 4 * 4);
    tf.dispose([x, dy, gamma]);
  });
});
