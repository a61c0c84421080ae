import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as tfd from '@tensorflow/tfjs-data';
import {BatchNormLayer, BatchRenormLayer, recalibrateStatistics} from '../../src';
import {channelMoments, maxRelError, normalizeRef, randomData, Ref, ref} from '../helpers/reference';
import {denseRef, randomizeWeights} from './helpers';

const EPS1 = 1e-3;
const EPS2 = 0.01;

/** input [6] → Dense(4) → BatchNormLayer → Dense(3, tanh) → BatchRenormLayer. */
function denseModel(): tfl.Sequential {
  const model = tfl.sequential({layers: [
    tfl.layers.dense({units: 4, inputShape: [6], name: 'd1'}),
    new BatchNormLayer({name: 'b1', epsilon: EPS1}),
    tfl.layers.dense({units: 3, activation: 'tanh', name: 'd2'}),
    new BatchRenormLayer({name: 'b2', epsilon: EPS2}),
  ]});
  randomizeWeights(model, 3);
  return model;
}

/** A Dense layer of the model, in float64. */
function denseLayerRef(x: Ref, layer: tfl.layers.Layer, act?: (v: number) => number): Ref {
  const [W, b] = layer.getWeights().map((t) => t.dataSync());
  return denseRef(x, W, b, act);
}

/** The paper's population statistics of per-batch activations: E[μ_B] and E[m/(m−1)·σ²_B]. */
function population(hs: Ref[], axis: number): {mean: number[]; variance: number[]} {
  const moments = hs.map((h) => channelMoments(h, axis));
  const c = moments[0].mean.length;
  const avg = (f: (m: typeof moments[0], k: number) => number) =>
    Array.from({length: c}, (_, k) => moments.reduce((s, m) => s + f(m, k), 0) / moments.length);
  return {mean: avg((m, k) => m.mean[k]), variance: avg((m, k) => m.variance[k] * m.count / (m.count - 1))};
}

function expectStatistics(layer: BatchNormLayer, expected: {mean: number[]; variance: number[]}): void {
  expect(maxRelError(layer.movingMean.read().dataSync(), expected.mean)).toBeLessThan(1e-5);
  expect(maxRelError(layer.movingVariance.read().dataSync(), expected.variance)).toBeLessThan(1e-5);
}

/** The expected statistics of b1 and b2, layer by layer, in float64. */
function denseReference(model: tfl.Sequential, xs: Float32Array[], sizes: number[]) {
  const inputs = xs.map((x, i) => ref([sizes[i], 6], x));
  const h1 = inputs.map((x) => denseLayerRef(x, model.getLayer('d1')));
  const p1 = population(h1, 1);
  const [g1, be1] = model.getLayer('b1').getWeights().map((t) => Array.from(t.dataSync()));
  const h2 = h1.map((h) => denseLayerRef(normalizeRef(h, 1, p1.mean, p1.variance, EPS1, g1, be1), model.getLayer('d2'), Math.tanh));
  return {b1: p1, b2: population(h2, 1)};
}

describe('recalibrateStatistics against a float64 computation', () => {
  const sizes = [5, 5, 5, 5];
  const xs = sizes.map((n, i) => randomData(n * 6, 40 + i, 1, 2));

  it('recalibrates layer by layer from an array of batches, BatchRenormLayer stddev included', async () => {
    const model = denseModel();
    const batches = xs.map((x, i) => tf.tensor2d(x, [sizes[i], 6]));
    const before = tf.memory().numTensors;
    const result = await recalibrateStatistics(model, batches);
    expect(tf.memory().numTensors).toBe(before);
    expect(result).toEqual({layers: ['b1', 'b2'], batches: 4});

    const expected = denseReference(model, xs, sizes);
    expectStatistics(model.getLayer('b1') as BatchNormLayer, expected.b1);
    const b2 = model.getLayer('b2') as BatchRenormLayer;
    expectStatistics(b2, expected.b2);
    expect(maxRelError(b2.movingStddev.read().dataSync(), expected.b2.variance.map((v) => Math.sqrt(v + EPS2))))
        .toBeLessThan(1e-5);
  });

  it('gives the same from a tf.data.Dataset of tensors and of {xs, ys} elements, without leaking', async () => {
    const expected = denseReference(denseModel(), xs, sizes);
    const batches = xs.map((x, i) => tf.tensor2d(x, [sizes[i], 6]));
    const datasets = [
      tfd.array(batches),
      tfd.zip({xs: tfd.array(batches), ys: tfd.array(batches.map((b) => tf.sum(b, 1)))}),
    ];
    for (const dataset of datasets) {
      const model = denseModel();
      const before = tf.memory().numTensors;
      await recalibrateStatistics(model, dataset as tfd.Dataset<tf.Tensor>);
      expect(tf.memory().numTensors).toBe(before);
      expectStatistics(model.getLayer('b1') as BatchNormLayer, expected.b1);
      expectStatistics(model.getLayer('b2') as BatchNormLayer, expected.b2);
    }
  });

  it('averages per-batch unbiased variances when batch sizes differ', async () => {
    const uneven = [6, 4, 3];
    const data = uneven.map((n, i) => randomData(n * 6, 60 + i, -1, 3));
    const model = denseModel();
    await recalibrateStatistics(model, data.map((x, i) => tf.tensor2d(x, [uneven[i], 6])));
    const expected = denseReference(model, data, uneven);
    expectStatistics(model.getLayer('b1') as BatchNormLayer, expected.b1);
    expectStatistics(model.getLayer('b2') as BatchNormLayer, expected.b2);
  });

  it('channels-first BN on the model input, then the built-in BatchNormalization on the last axis', async () => {
    const model = tfl.sequential({layers: [
      new BatchNormLayer({name: 'cf', axis: 1, inputShape: [3, 4, 5]}),
      tfl.layers.batchNormalization({name: 'builtin', axis: -1, epsilon: EPS2}),
    ]});
    randomizeWeights(model, 9);
    const shape = [2, 3, 4, 5];
    const data = [0, 1, 2].map((i) => randomData(120, 70 + i, 2, 1.5));
    await recalibrateStatistics(model, data.map((x) => tf.tensor4d(x, shape as [number, number, number, number])));

    const inputs = data.map((x) => ref(shape, x));
    const p1 = population(inputs, 1);
    const [g, b] = model.getLayer('cf').getWeights().map((t) => Array.from(t.dataSync()));
    const p2 = population(inputs.map((x) => normalizeRef(x, 1, p1.mean, p1.variance, EPS1, g, b)), 3);
    expectStatistics(model.getLayer('cf') as BatchNormLayer, p1);
    const [, , mean, variance] = model.getLayer('builtin').getWeights().map((t) => t.dataSync());
    expect(maxRelError(mean, p2.mean)).toBeLessThan(1e-5);
    expect(maxRelError(variance, p2.variance)).toBeLessThan(1e-5);
  });
});

describe('recalibrateStatistics errors', () => {
  const batch = () => tf.tensor2d(randomData(12, 1), [2, 6]);

  it('no batches', async () => {
    await expect(recalibrateStatistics(denseModel(), [])).rejects.toThrow('recalibrateStatistics: no batches were given');
    await expect(recalibrateStatistics(denseModel(), tfd.array([] as tf.Tensor[])))
        .rejects.toThrow('no batches were given');
  });

  it('a batch with one value per channel', async () => {
    await expect(recalibrateStatistics(denseModel(), [batch(), tf.ones([1, 6])])).rejects.toThrow(
        "recalibrateStatistics: batch 1 gives BatchNormLayer 'b1' 1 value per channel (input shape [1, 4]); " +
        'the unbiased variance needs at least 2.');
  });

  it('a failure after the first layer restores every statistic (all or nothing)', async () => {
    const model = denseModel();
    const before = model.getWeights().map((t) => t.dataSync().slice());
    let passes = 0;
    const secondPassFails = {iterator: async () => {
      passes++;
      let i = 0;
      return {next: async () => {
        if (i++ >= 2) return {done: true as const, value: undefined};
        return {done: false as const, value: passes === 1 ? batch() : tf.ones([1, 6])};
      }};
    }};
    await expect(recalibrateStatistics(model, secondPassFails)).rejects.toThrow(/batch 0 gives BatchRenormLayer 'b2'/);
    model.getWeights().forEach((t, i) => expect(t.dataSync()).toEqual(before[i]));
  });

  it('a model without batch-statistics layers', async () => {
    const model = tfl.sequential({layers: [tfl.layers.dense({units: 2, inputShape: [6], name: 'only'})]});
    model.build();
    await expect(recalibrateStatistics(model, [batch()])).rejects.toThrow(/has no batch-statistics layers/);
  });

  it('a dataset that cannot be iterated twice', async () => {
    let served = false;
    const oneShot = {iterator: async () => ({
      next: async () => {
        if (served) return {done: true as const, value: undefined};
        served = true;
        return {done: false as const, value: batch()};
      },
    })};
    await expect(recalibrateStatistics(denseModel(), oneShot)).rejects.toThrow(
        "the dataset yielded 1 batches for the first layer and 0 for 'b2'; each layer reads the whole dataset once");
  });

  it('batches that do not match the model inputs, and non-batches', async () => {
    await expect(recalibrateStatistics(denseModel(), [[batch(), batch()]]))
        .rejects.toThrow(/each batch must be a tensor, an array of 1 tensor\(s\) or \{xs\}/);
    await expect(recalibrateStatistics(denseModel(), 5 as never)).rejects.toThrow(/batches must be an array/);
  });
});
