import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, NormalizationConfigError, NormalizationShapeError} from '../../src';
import {useBackend} from '../helpers/backends';
import {maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {bits, expectIdenticalWeights, roundTrip} from '../helpers/round_trip';
import {
  centralDifferences, GhostConfig, kerasGhostStep, RenormState, weightedSum,
} from '../helpers/variant_reference';

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const EPS = 1e-3;

function initialState(c: number, seed: number): RenormState {
  const fill = (v: number) => new Array(c).fill(v);
  return {gamma: Array.from(randomData(c, seed, 1, 0.3)), beta: Array.from(randomData(c, seed + 1)),
    movingMean: fill(0), movingVariance: fill(1), movingStddev: fill(1), renormMean: fill(0), renormStddev: fill(1)};
}

function ghostLayer(shape: number[], cfg: GhostConfig, state: RenormState): BatchNormLayer {
  const args = {axis: cfg.axis, epsilon: EPS, momentum: cfg.momentum, virtualBatchSize: cfg.virtualBatchSize};
  const layer = cfg.renorm == null ? new BatchNormLayer(args) : new BatchRenormLayer({...args,
    renormMomentum: cfg.renorm.momentum, renormClipping: {rmin: cfg.renorm.rmin, rmax: cfg.renorm.rmax, dmax: cfg.renorm.dmax}});
  layer.apply(tf.zeros([cfg.virtualBatchSize, ...shape.slice(1)]));
  layer.gamma!.write(tf.tensor1d(state.gamma));
  layer.beta!.write(tf.tensor1d(state.beta));
  return layer;
}

/** The layer's statistics in tf.keras order, next to the reference's. */
function expectState(layer: BatchNormLayer, s: RenormState): void {
  const pairs: Array<[tfl.LayerVariable, number[]]> = [[layer.movingMean, s.movingMean], [layer.movingVariance, s.movingVariance]];
  if (layer instanceof BatchRenormLayer) {
    pairs.push([layer.movingStddev, s.movingStddev], [layer.renormMean, s.renormMean], [layer.renormStddev, s.renormStddev]);
  }
  for (const [variable, expected] of pairs) expect(maxRelError(variable.read().dataSync(), expected)).toBeLessThan(1e-5);
}

/** Step t's batch: mean and spread drift, and differ across samples, so ghost statistics differ. */
const batchAt = (shape: number[], t: number) => {
  const data = randomData(size(shape), 200 + t, 0.7 * Math.sin(t), 0.5 + 0.3 * t);
  const perSample = data.length / shape[0];
  return data.map((v, i) => v * (1 + 0.4 * (Math.floor(i / perSample) % 3)) + 0.3 * Math.floor(i / perSample));
};

const CASES = [
  {name: 'rank 2 channels-last, v 2 of 8', shape: [8, 3], axis: 1, virtualBatchSize: 2},
  {name: 'rank 2, v 3 of 6', shape: [6, 4], axis: 1, virtualBatchSize: 3},
  {name: 'rank 4 channels-last (transposed view), v 2 of 6', shape: [6, 2, 3, 4], axis: 3, virtualBatchSize: 2},
  {name: 'rank 4 channels-first (free view), v 2 of 4', shape: [4, 3, 2, 2], axis: 1, virtualBatchSize: 2},
  {name: 'rank 4 channel axis 2, v 3 of 6', shape: [6, 2, 3, 2], axis: 2, virtualBatchSize: 3},
  {name: 'rank 4 channels-last, v 1 (one sample per ghost batch)', shape: [4, 2, 2, 3], axis: 3, virtualBatchSize: 1},
];

function stepsAgainstKeras(renorm: GhostConfig['renorm']): void {
  for (const {name, shape, axis, virtualBatchSize} of CASES) {
    it(`${name}: outputs and statistics over 4 training steps, then inference`, () => {
      const cfg: GhostConfig = {axis, eps: EPS, virtualBatchSize, momentum: 0.8, renorm};
      let state = initialState(shape[axis], 3);
      const layer = ghostLayer(shape, cfg, state);
      const before = tf.memory().numTensors;
      let clipped = 0;
      for (let t = 0; t < 4; t++) {
        const xData = batchAt(shape, t);
        const step = kerasGhostStep(ref(shape, xData), state, cfg);
        // The ghost batches really differ: this is not whole-batch normalization.
        expect(Math.abs(step.ghostMean[0][0] - step.ghostMean[step.ghostMean.length - 1][0])).toBeGreaterThan(1e-3);
        const y = tf.tidy(() => layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor);
        expect(maxRelError(y.dataSync(), step.y.data)).toBeLessThan(1e-5);
        y.dispose();
        state = step.next;
        expectState(layer, state);
        clipped += step.r.filter((v) => v === renorm?.rmin || v === renorm?.rmax).length +
            step.d.filter((v) => Math.abs(v) === renorm?.dmax).length;
      }
      expect(tf.memory().numTensors).toBe(before);
      if (renorm != null) expect(clipped).toBeGreaterThan(0);
      // Inference uses the moving statistics, whatever the batch size (3 is no multiple of v > 1).
      const xData = batchAt([3, ...shape.slice(1)], 9);
      const inference = layer.apply(tf.tensor(xData, [3, ...shape.slice(1)])) as tf.Tensor;
      const expected = normalizeRef(ref([3, ...shape.slice(1)], xData), axis, state.movingMean, state.movingVariance,
          EPS, state.gamma, state.beta);
      expect(maxRelError(inference.dataSync(), expected.data)).toBeLessThan(1e-5);
    });
  }
}

function gradientsAgainstFiniteDifferences(renorm: GhostConfig['renorm']): void {
  for (const {name, shape, axis, virtualBatchSize} of [CASES[0], CASES[2], CASES[3]]) {
    it(`${name}: dx, dgamma, dbeta (r and d constant)`, () => {
      const cfg: GhostConfig = {axis, eps: EPS, virtualBatchSize, momentum: 0.99, renorm};
      const c = shape[axis];
      const xData = Array.from(batchAt(shape, 1));
      const w = Array.from(randomData(size(shape), 23));
      const state = {...initialState(c, 5), renormMean: Array.from(randomData(c, 29, 0.3, 0.5)),
        renormStddev: Array.from(randomData(c, 31, 1.3, 0.3))};
      const layer = ghostLayer(shape, cfg, state);
      if (layer instanceof BatchRenormLayer) {
        layer.renormMean.write(tf.tensor1d(state.renormMean));
        layer.renormStddev.write(tf.tensor1d(state.renormStddev));
      }
      const {r, d} = kerasGhostStep(ref(shape, xData), state, cfg);
      if (renorm != null) expect(r.some((v) => v !== 1) && d.some((v) => v !== 0)).toBe(true);
      const loss = (xs: number[], gamma: number[], beta: number[]) =>
        weightedSum(kerasGhostStep(ref(shape, xs), {...state, gamma, beta}, cfg, {r, d}).y.data, w);
      const xv = tf.variable(tf.tensor(xData, shape));
      const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
      const wT = tf.tensor(w, shape);
      const {grads} = tf.variableGrads(
          () => tf.sum(tf.mul(layer.apply(xv, {training: true}) as tf.Tensor, wT)) as tf.Scalar, [xv, ...vars]);
      expect(maxRelError(grads[xv.name].dataSync(), centralDifferences((v) => loss(v, state.gamma, state.beta), xData)))
          .toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[0].name].dataSync(), centralDifferences((v) => loss(xData, v, state.beta), state.gamma)))
          .toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[1].name].dataSync(), centralDifferences((v) => loss(xData, state.gamma, v), state.beta)))
          .toBeLessThan(2e-3);
      tf.dispose([xv, wT, ...Object.values(grads)]);
    });
  }
}

const RENORM = {rmin: 0.8, rmax: 1.2, dmax: 0.2, momentum: 0.7};

for (const backend of ['cpu', 'wasm']) {
  describe(`ghost batch normalization against the float64 tf.keras reference (${backend})`, () => {
    useBackend(backend);
    describe('BatchNormLayer', () => stepsAgainstKeras(undefined));
    describe('BatchRenormLayer', () => stepsAgainstKeras(RENORM));
    describe('BatchNormLayer gradients', () => gradientsAgainstFiniteDifferences(undefined));
    describe('BatchRenormLayer gradients', () => gradientsAgainstFiniteDifferences(RENORM));
  });
}

describe('virtualBatchSize options and errors', () => {
  it('unbiasedVariance uses the values per channel of one ghost batch', () => {
    const shape = [8, 3];
    const cfg: GhostConfig = {axis: 1, eps: EPS, virtualBatchSize: 4, momentum: 0.5};
    const state = initialState(3, 3);
    const layer = new BatchNormLayer({momentum: 0.5, virtualBatchSize: 4, unbiasedVariance: true, epsilon: EPS});
    const xData = batchAt(shape, 2);
    layer.apply(tf.tensor(xData, shape), {training: true});
    // m = 4 samples per ghost batch: the averaged ghost variance times 4/3.
    const biased = kerasGhostStep(ref(shape, xData), state, cfg).next.movingVariance;
    const expected = biased.map((v) => 2 * (v - 0.5) * 4 / 3 * 0.5 + 0.5);
    expect(maxRelError(layer.movingVariance.read().dataSync(), expected)).toBeLessThan(1e-5);
  });

  it('v equal to the batch size is whole-batch normalization', () => {
    const shape = [6, 2, 2, 3];
    const xData = batchAt(shape, 3);
    const ghost = new BatchNormLayer({virtualBatchSize: 6});
    const plain = new BatchNormLayer({});
    const y = (layer: BatchNormLayer) => (layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor).dataSync();
    expect(maxRelError(y(ghost), y(plain))).toBeLessThan(1e-6);
    expect(maxRelError(ghost.movingVariance.read().dataSync(), plain.movingVariance.read().dataSync())).toBeLessThan(1e-6);
  });

  it.each([0, -2, 1.5, '2', true, Infinity])('rejects virtualBatchSize %p with NormalizationConfigError', (value) => {
    const make = () => new BatchNormLayer({name: 'bn', virtualBatchSize: value as number});
    expect(make).toThrow(NormalizationConfigError);
    expect(make).toThrow(/^BatchNormLayer 'bn': invalid virtualBatchSize .*; expected an integer >= 1\.$/);
    expect(() => new BatchRenormLayer({virtualBatchSize: value as number})).toThrow(NormalizationConfigError);
  });

  it('a training batch that v does not divide fails, naming layer, batch size and v, and changes nothing', () => {
    for (const layer of [new BatchNormLayer({name: 'bn', virtualBatchSize: 4}),
      new BatchRenormLayer({name: 'bn', virtualBatchSize: 4})]) {
      layer.apply(tf.zeros([4, 3]));
      const weights = layer.getWeights().map(bits);
      const call = () => layer.apply(tf.ones([6, 3]), {training: true});
      expect(call).toThrow(NormalizationShapeError);
      expect(call).toThrow(`${layer.getClassName()} 'bn': virtualBatchSize 4 must divide the training batch size; ` +
          'received a batch of 6 (input shape [6, 3])');
      expect(call).toThrow(/last batch of an epoch is smaller/);
      expect(layer.getWeights().map(bits)).toEqual(weights);
      // Inference takes any batch size.
      expect((layer.apply(tf.ones([6, 3])) as tf.Tensor).shape).toEqual([6, 3]);
    }
  });

  it('a ghost batch with one value per channel fails (its variance would be 0)', () => {
    const layer = new BatchNormLayer({name: 'bn', virtualBatchSize: 1});
    expect(() => layer.apply(tf.ones([4, 3]), {training: true})).toThrow(
        "BatchNormLayer 'bn': a ghost batch of virtualBatchSize 1 holds 1 value per channel for input shape [4, 3]; " +
        'batch statistics need at least 2');
  });

  it('fit: a dataset whose last batch v does not divide fails clearly', async () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 3, inputShape: [2]}), new BatchNormLayer({name: 'bn', virtualBatchSize: 4})]});
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    // 10 samples in batches of 8: the last batch holds 2.
    await expect(model.fit(tf.ones([10, 2]), tf.zeros([10, 3]), {batchSize: 8, epochs: 1, verbose: 0}))
        .rejects.toThrow(/received a batch of 2 .*last batch of an epoch/);
  });
});

describe('virtualBatchSize save/load', () => {
  for (const Layer of [BatchNormLayer, BatchRenormLayer]) {
    it(`${Layer.className} keeps the option, its weights and its training`, async () => {
      const shape = [4, 3, 2, 2];
      const model = tfl.sequential({layers: [new Layer({inputShape: shape.slice(1), axis: 1, virtualBatchSize: 2, momentum: 0.5})]});
      model.predict(tf.zeros(shape));
      (model.layers[0] as BatchNormLayer).apply(tf.tensor(batchAt(shape, 1), shape), {training: true});
      const {loaded, artifacts} = await roundTrip(model);
      expect(JSON.stringify(artifacts.modelTopology)).toContain('"virtual_batch_size":2');
      const again = loaded.layers[0] as BatchNormLayer;
      expect(again).toBeInstanceOf(Layer);
      expect(again.virtualBatchSize).toBe(2);
      expectIdenticalWeights(model, loaded);
      const x = tf.tensor(batchAt(shape, 2), shape);
      expect(bits(again.apply(x, {training: true}) as tf.Tensor)).toEqual(
          bits((model.layers[0] as BatchNormLayer).apply(x, {training: true}) as tf.Tensor));
      expectIdenticalWeights(model, loaded);
    });
  }

  it('without the option, getConfig has no virtualBatchSize key (files stay as before)', () => {
    expect(new BatchNormLayer({}).getConfig()).not.toHaveProperty('virtualBatchSize');
    expect(new BatchNormLayer({virtualBatchSize: 8}).getConfig().virtualBatchSize).toBe(8);
  });
});
