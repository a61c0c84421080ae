/**
 * The final partial batch (issue 11, item 2). tfjs's fit has no drop-last
 * option: 33 samples with batchSize 16 end each epoch with a batch of one
 * sample. That batch has one value per channel, hence no batch variance; the
 * layers normalize it with the moving statistics and leave every statistic
 * unchanged. References: float64 moving averages of the full batches only,
 * written here; inference with the moving statistics (normalizeRef).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer} from '../../src';
import {channelMoments, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';

const FEATURES = 3;
const BATCH = 16;
const MOMENTUM = 0.9;

/** BN (or BRN) first, so its inputs are the data whatever the optimizer does; a Dense head after it. */
function model(norm: BatchNormLayer): tfl.Sequential {
  const m = tfl.sequential({layers: [
    tfl.layers.inputLayer({inputShape: [FEATURES]}), norm, tfl.layers.dense({units: 1}),
  ]});
  m.compile({optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError'});
  return m;
}

/** Float64 moving averages over the full batches of an unshuffled epoch (the last, one-sample batch excluded). */
function fullBatchStatistics(data: Float32Array, samples: number, variance: 'biased' | 'stddev', epsilon: number) {
  let mean = new Array(FEATURES).fill(0);
  let second = new Array(FEATURES).fill(1);
  for (let start = 0; start + 1 < samples; start += BATCH) {
    const size = Math.min(BATCH, samples - start);
    const m = channelMoments(ref([size, FEATURES], data.subarray(start * FEATURES, (start + size) * FEATURES)), 1);
    const batchSecond = variance === 'biased' ? m.variance : m.variance.map((v) => Math.sqrt(v + epsilon));
    mean = mean.map((old, k) => MOMENTUM * old + (1 - MOMENTUM) * m.mean[k]);
    second = second.map((old, k) => MOMENTUM * old + (1 - MOMENTUM) * batchSecond[k]);
  }
  return {mean, second};
}

describe('fit on k·batchSize + 1 samples completes', () => {
  for (const samples of [33, 17, 1]) {
    it(`BN: ${samples} samples, batchSize ${BATCH}: the moving statistics follow the full batches only`, async () => {
      const norm = new BatchNormLayer({momentum: MOMENTUM});
      const m = model(norm);
      const data = randomData(samples * FEATURES, samples, 1.5, 2);
      const x = tf.tensor2d(data, [samples, FEATURES]);
      const y = tf.zeros([samples, 1]);
      await m.fit(x, y, {batchSize: BATCH, epochs: 1, shuffle: false, verbose: 0});
      const expected = fullBatchStatistics(data, samples, 'biased', norm.epsilon);
      expect(maxRelError(norm.movingMean.read().dataSync(), expected.mean)).toBeLessThan(1e-5);
      expect(maxRelError(norm.movingVariance.read().dataSync(), expected.second)).toBeLessThan(1e-5);
      tf.dispose([x, y]);
    });
  }

  it('BRN: 33 samples; moving and renorm statistics follow the two full batches, the warm-up step count too',
      async () => {
        const norm = new BatchRenormLayer({momentum: MOMENTUM, renormMomentum: MOMENTUM,
          renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}, renormWarmup: {plainSteps: 1, rmaxReachedAt: 5, dmaxReachedAt: 5}});
        const m = model(norm);
        const data = randomData(33 * FEATURES, 9, -1, 3);
        const x = tf.tensor2d(data, [33, FEATURES]);
        const y = tf.zeros([33, 1]);
        await m.fit(x, y, {batchSize: BATCH, epochs: 1, shuffle: false, verbose: 0});
        const expected = fullBatchStatistics(data, 33, 'stddev', norm.epsilon);
        for (const weight of [norm.movingMean, norm.renormMean]) {
          expect(maxRelError(weight.read().dataSync(), expected.mean)).toBeLessThan(1e-5);
        }
        for (const weight of [norm.movingStddev, norm.renormStddev]) {
          expect(maxRelError(weight.read().dataSync(), expected.second)).toBeLessThan(1e-5);
        }
        expect(norm.renormStep!.read().dataSync()[0]).toBe(2);
        tf.dispose([x, y]);
      });
});

describe('a training batch with one value per channel', () => {
  for (const kind of ['BN', 'BRN']) {
    it(`${kind}: output equals inference with the moving statistics (float64), every weight unchanged`, () => {
      const norm = kind === 'BN' ? new BatchNormLayer() : new BatchRenormLayer({renormClipping: {rmax: 2}});
      norm.apply(tf.zeros([2, FEATURES]));
      const stats = {mean: [0.5, -1, 2], variance: [0.25, 4, 1.5], gamma: [1.5, 0.5, -1], beta: [0.1, 0.2, 0.3]};
      norm.setWeights(norm.weights.map((w) => {
        const name = w.originalName.split('/').pop()!;
        if (name === 'moving_mean') return tf.tensor1d(stats.mean);
        if (name === 'moving_variance') return tf.tensor1d(stats.variance);
        if (name === 'gamma') return tf.tensor1d(stats.gamma);
        if (name === 'beta') return tf.tensor1d(stats.beta);
        return w.read().clone();
      }));
      const before = norm.getWeights().map((w) => Array.from(w.dataSync()));
      const sample = [3, -2, 0.5];
      const x = tf.tensor2d([sample]);
      const tensorsBefore = tf.memory().numTensors;
      const y = norm.apply(x, {training: true}) as tf.Tensor;
      const expected = normalizeRef(ref([1, FEATURES], sample), 1, stats.mean, stats.variance, norm.epsilon,
          stats.gamma, stats.beta);
      expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-6);
      expect(norm.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(before);
      y.dispose();
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      x.dispose();
    });
  }
});

describe('throwOnSingleValueBatch (opt-in error)', () => {
  it('fit of 33 samples with batchSize 16 throws at the last batch, naming the cause and the remedies', async () => {
    const norm = new BatchNormLayer({throwOnSingleValueBatch: true});
    const m = model(norm);
    const x = tf.randomNormal([33, FEATURES]);
    const y = tf.zeros([33, 1]);
    const error = await m.fit(x, y, {batchSize: BATCH, epochs: 1, verbose: 0}).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toMatch(/BatchNormLayer '.*': a training batch of input shape \[1, 3\] holds one value per channel/);
    expect(message).toMatch(/33 = 2·16 \+ 1/);
    expect(message).toMatch(/set throwOnSingleValueBatch to false/);
    expect(message).toMatch(/batches of 2 or more/);
    tf.dispose([x, y]);
  });

  it('the failed call changes no weight', () => {
    const norm = new BatchRenormLayer({throwOnSingleValueBatch: true});
    norm.apply(tf.zeros([2, FEATURES]));
    const before = norm.getWeights().map((w) => Array.from(w.dataSync()));
    expect(() => norm.apply(tf.ones([1, FEATURES]), {training: true})).toThrow(/throwOnSingleValueBatch is true/);
    expect(norm.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(before);
  });

  it('round-trips through getConfig/fromConfig and save/load; rejects a non-boolean', async () => {
    for (const value of [true, false]) {
      const layer = new BatchNormLayer({throwOnSingleValueBatch: value});
      expect(layer.getConfig().throwOnSingleValueBatch).toBe(value);
      const rebuilt = BatchNormLayer.fromConfig(BatchNormLayer, JSON.parse(JSON.stringify(layer.getConfig())));
      expect((rebuilt as BatchNormLayer).throwOnSingleValueBatch).toBe(value);
    }
    const saved = tfl.sequential({layers: [new BatchNormLayer({inputShape: [FEATURES], throwOnSingleValueBatch: true})]});
    let artifacts: tf.io.ModelArtifacts | undefined;
    await saved.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts!));
    expect((loaded.layers[0] as BatchNormLayer).throwOnSingleValueBatch).toBe(true);
    expect(() => new BatchNormLayer({throwOnSingleValueBatch: 1 as unknown as boolean}))
        .toThrow(/invalid throwOnSingleValueBatch 1; expected true or false/);
  });
});
