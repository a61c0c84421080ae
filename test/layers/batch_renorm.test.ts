import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, batchRenorm} from '../../src';
import {renormLimits} from '../../src/layers/renorm_clipping';
import {channelMoments, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {bits, expectIdenticalWeights, roundTrip} from '../helpers/round_trip';
import {
  centralDifferences, RenormConfig, RenormState, renormStepRef, weightedSum,
} from '../helpers/variant_reference';

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const positive = (axis: number, rank: number) => axis < 0 ? axis + rank : axis;
const KERAS_WEIGHTS = ['gamma', 'beta', 'moving_mean', 'moving_variance', 'moving_stddev', 'renorm_mean', 'renorm_stddev'];

function built(shape: number[], args: Record<string, unknown>): BatchRenormLayer {
  const layer = new BatchRenormLayer(args);
  layer.apply(tf.zeros(shape));
  return layer;
}

function initialState(c: number, gamma: number[], beta: number[]): RenormState {
  const fill = (v: number) => new Array(c).fill(v);
  return {gamma, beta, movingMean: fill(0), movingVariance: fill(1), movingStddev: fill(1), renormMean: fill(0),
    renormStddev: fill(1)};
}

const stateArrays = (s: RenormState) => [s.gamma, s.beta, s.movingMean, s.movingVariance, s.movingStddev,
  s.renormMean, s.renormStddev];

/** Step t's batch: its mean and spread drift so that r and d leave their clipping ranges. */
const batchAt = (shape: number[], t: number) => randomData(size(shape), 100 + t, 1.5 * Math.sin(t) + 0.5, 0.3 + 0.5 * t);

describe('BatchRenormLayer against a float64 reference of Keras renorm, step by step', () => {
  for (const {shape, axis} of [{shape: [8, 4], axis: -1}, {shape: [4, 3, 2, 2], axis: 1}, {shape: [2, 3, 2, 5], axis: -1}]) {
    it(`shape [${shape}] axis ${axis}: outputs and all seven weights over 6 training steps`, () => {
      const a = positive(axis, shape.length);
      const c = shape[a];
      const cfg: RenormConfig = {axis: a, eps: 1e-3, momentum: 0.9, renormMomentum: 0.8, rmin: 0.6, rmax: 1.5, dmax: 0.4};
      const gamma = Array.from(randomData(c, 3, 1, 0.3));
      const beta = Array.from(randomData(c, 5));
      const layer = built(shape, {axis, epsilon: cfg.eps, momentum: cfg.momentum, renormMomentum: cfg.renormMomentum,
        renormClipping: {rmin: cfg.rmin, rmax: cfg.rmax, dmax: cfg.dmax}});
      expect(layer.weights.map((w) => w.originalName.split('/').pop())).toEqual(KERAS_WEIGHTS);
      layer.gamma!.write(tf.tensor1d(gamma));
      layer.beta!.write(tf.tensor1d(beta));
      let state = initialState(c, gamma, beta);
      const clipped = {r: 0, d: 0};
      for (let t = 0; t < 6; t++) {
        const xData = batchAt(shape, t);
        const step = renormStepRef(ref(shape, xData), state, cfg);
        const y = layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor;
        expect(maxRelError(y.dataSync(), step.y.data)).toBeLessThan(1e-5);
        state = step.next;
        layer.getWeights().forEach((w, i) => expect(maxRelError(w.dataSync(), stateArrays(state)[i])).toBeLessThan(1e-5));
        clipped.r += step.r.filter((r) => r === cfg.rmin || r === cfg.rmax).length;
        clipped.d += step.d.filter((d) => Math.abs(d) === cfg.dmax).length;
      }
      // The data exercised the clipping on both corrections.
      expect(clipped.r).toBeGreaterThan(0);
      expect(clipped.d).toBeGreaterThan(0);
      // Inference is batch normalization with moving_mean and moving_variance.
      const xData = batchAt(shape, 9);
      const inference = layer.apply(tf.tensor(xData, shape)) as tf.Tensor;
      const expected = normalizeRef(ref(shape, xData), a, state.movingMean, state.movingVariance, cfg.eps, gamma, beta);
      expect(maxRelError(inference.dataSync(), expected.data)).toBeLessThan(1e-5);
    });
  }

  it('moving_stddev and renorm_stddev start at √(initial moving variance); unclipped when renormClipping is {}', () => {
    const shape = [6, 3];
    const layer = built(shape, {movingVarianceInitializer: {className: 'Constant', config: {value: 4}},
      momentum: 0.5, renormMomentum: 0.5});
    const [, , , mv, ms, , rs] = layer.getWeights().map((w) => Array.from(w.dataSync()));
    expect(mv).toEqual([4, 4, 4]);
    expect(ms).toEqual([2, 2, 2]);
    expect(rs).toEqual([2, 2, 2]);
    const xData = randomData(18, 7, 5, 9);
    const y = layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor;
    const cfg = {axis: 1, eps: 1e-3, momentum: 0.5, renormMomentum: 0.5, rmin: 0, rmax: Infinity, dmax: Infinity};
    const state = {...initialState(3, [1, 1, 1], [0, 0, 0]), movingVariance: mv, movingStddev: ms, renormStddev: rs};
    const step = renormStepRef(ref(shape, xData), state, cfg);
    expect(Math.max(...step.r)).toBeGreaterThan(2);
    expect(maxRelError(y.dataSync(), step.y.data)).toBeLessThan(1e-5);
  });

  it('unbiasedVariance: moving_stddev follows √(m/(m−1)·σ²_B + ε); the renorm statistics stay biased', () => {
    const shape = [5, 2, 3];
    const layer = built(shape, {axis: 1, momentum: 0.5, renormMomentum: 0.5, unbiasedVariance: true});
    const xData = randomData(30, 17, 1, 2);
    layer.apply(tf.tensor(xData, shape), {training: true});
    const {variance} = channelMoments(ref(shape, xData), 1);
    const [, , , mv, ms, , rs] = layer.getWeights().map((w) => w.dataSync());
    const movingStddev = variance.map((v) => 0.5 + 0.5 * Math.sqrt(v * 15 / 14 + 1e-3));
    expect(maxRelError(ms, movingStddev)).toBeLessThan(1e-6);
    expect(maxRelError(mv, movingStddev.map((s) => s * s - 1e-3))).toBeLessThan(1e-6);
    expect(maxRelError(rs, variance.map((v) => 0.5 + 0.5 * Math.sqrt(v + 1e-3)))).toBeLessThan(1e-6);
  });
});

describe('BatchRenormLayer with rmax = rmin = 1 and dmax = 0 is BatchNormLayer', () => {
  it('same outputs, gradients and moving mean over 5 training steps', () => {
    const shape = [3, 4, 2, 5];
    const args = {momentum: 0.7, epsilon: 1e-3};
    const renorm = built(shape, {...args, renormClipping: {rmax: 1, rmin: 1, dmax: 0}});
    const plain = new BatchNormLayer(args);
    plain.apply(tf.zeros(shape));
    const gamma = tf.tensor1d(randomData(5, 9, 1, 0.3));
    const beta = tf.tensor1d(randomData(5, 11));
    for (const layer of [renorm, plain]) {
      layer.gamma!.write(gamma);
      layer.beta!.write(beta);
    }
    const w = tf.tensor(randomData(size(shape), 13), shape);
    for (let t = 0; t < 5; t++) {
      const x = tf.tensor(batchAt(shape, t), shape);
      const run = (layer: BatchNormLayer) => {
        const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
        const xv = tf.variable(x);
        const {value, grads} = tf.variableGrads(
            () => tf.sum(tf.mul(layer.apply(xv, {training: true}) as tf.Tensor, w)) as tf.Scalar, [xv, ...vars]);
        return [value, grads[xv.name], grads[vars[0].name], grads[vars[1].name], layer.movingMean.read()];
      };
      const ours = run(renorm);
      const theirs = run(plain);
      ours.forEach((o, i) => expect(maxRelError(o.dataSync(), theirs[i].dataSync())).toBeLessThan(1e-6));
    }
  });
});

describe('BatchRenormLayer warm-up schedule', () => {
  it('renormLimits follows the paper: plain BN to 5k steps, rmax 3 at 40k, dmax 5 at 25k, linear in between', () => {
    const clipping = {rmax: 3, rmin: 1 / 3, dmax: 5};
    const warmup = {plainSteps: 5000, rmaxReachedAt: 40000, dmaxReachedAt: 25000};
    // Linear from (5000, plain) to the reached-at step, written out per step.
    const expected = (step: number) => {
      const fr = Math.min(Math.max((step - 5000) / 35000, 0), 1);
      const fd = Math.min(Math.max((step - 5000) / 20000, 0), 1);
      return {rmin: 1 - fr * (2 / 3), rmax: 1 + 2 * fr, dmax: 5 * fd};
    };
    for (const step of [0, 4999, 5000, 10000, 15000, 22500, 25000, 30000, 40000, 1e6]) {
      const got = renormLimits(clipping, warmup, step);
      const want = expected(step);
      for (const key of ['rmin', 'rmax', 'dmax'] as const) expect(got[key]).toBeCloseTo(want[key], 12);
    }
    expect(renormLimits(clipping, warmup, 5000)).toEqual({rmin: 1, rmax: 1, dmax: 0});
    expect(renormLimits(clipping, warmup, 15000).dmax).toBeCloseTo(2.5, 12);
    expect(renormLimits(clipping, warmup, 22500).rmax).toBeCloseTo(2, 12);
    expect(renormLimits(clipping, warmup, 40000)).toEqual({rmin: 1 / 3, rmax: 3, dmax: 5});
    // Without a warm-up, the configured limits; missing keys unclipped (Keras: rmin 0, rmax and dmax infinite).
    expect(renormLimits({rmax: 2}, null, 0)).toEqual({rmin: 0, rmax: 2, dmax: Infinity});
  });

  it('the layer applies the limits of its step count, which it saves and stops at the end of the schedule', () => {
    const shape = [6, 3];
    const cfg: RenormConfig = {axis: 1, eps: 1e-3, momentum: 0.9, renormMomentum: 0.5, rmin: 0.5, rmax: 2, dmax: 1};
    const layer = built(shape, {momentum: cfg.momentum, renormMomentum: cfg.renormMomentum,
      renormClipping: {rmin: 0.5, rmax: 2, dmax: 1}, renormWarmup: {plainSteps: 2, rmaxReachedAt: 6, dmaxReachedAt: 4}});
    expect(layer.weights.map((w) => w.originalName.split('/').pop())).toEqual([...KERAS_WEIGHTS, 'renorm_step']);
    let state = initialState(3, [1, 1, 1], [0, 0, 0]);
    for (let t = 0; t < 9; t++) {
      const fr = Math.min(Math.max((t - 2) / 4, 0), 1);
      const fd = Math.min(Math.max((t - 2) / 2, 0), 1);
      const limits = {rmin: 1 - 0.5 * fr, rmax: 1 + fr, dmax: fd};
      const xData = randomData(18, 200 + t, 3 * t - 4, 0.2 + t);
      const step = renormStepRef(ref(shape, xData), state, {...cfg, ...limits});
      const y = layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor;
      expect(maxRelError(y.dataSync(), step.y.data)).toBeLessThan(1e-5);
      if (t <= 2) {
        // Plain batch normalization while the warm-up holds r = 1, d = 0.
        const m = channelMoments(ref(shape, xData), 1);
        expect(maxRelError(y.dataSync(), normalizeRef(ref(shape, xData), 1, m.mean, m.variance, cfg.eps).data))
            .toBeLessThan(1e-5);
      }
      state = step.next;
      expect(layer.renormStep!.read().dataSync()[0]).toBe(Math.min(t + 1, 6));
    }
  });
});

describe('BatchRenormLayer gradients against central finite differences (r and d constant)', () => {
  for (const {shape, axis} of [{shape: [6, 3], axis: -1}, {shape: [3, 4, 2, 2], axis: 1}]) {
    it(`dx, dgamma, dbeta for shape [${shape}] axis ${axis}`, () => {
      const a = positive(axis, shape.length);
      const c = shape[a];
      const n = size(shape);
      const cfg: RenormConfig = {axis: a, eps: 1e-3, momentum: 0.99, renormMomentum: 0.99, rmin: 0.8, rmax: 1.3, dmax: 0.5};
      const xData = Array.from(randomData(n, 21, 0.5, 1.5));
      const w = Array.from(randomData(n, 23));
      const gamma = Array.from(randomData(c, 25, 1, 0.3));
      const beta = Array.from(randomData(c, 27));
      const renormMean = Array.from(randomData(c, 29, 0.3, 0.5));
      const renormStddev = Array.from(randomData(c, 31, 1.3, 0.3));
      const layer = built(shape, {axis, epsilon: cfg.eps, renormClipping: {rmin: cfg.rmin, rmax: cfg.rmax, dmax: cfg.dmax}});
      layer.gamma!.write(tf.tensor1d(gamma));
      layer.beta!.write(tf.tensor1d(beta));
      layer.renormMean.write(tf.tensor1d(renormMean));
      layer.renormStddev.write(tf.tensor1d(renormStddev));
      const state = {...initialState(c, gamma, beta), renormMean, renormStddev};
      // r and d at this batch, then held fixed: the gradient treats them as constants.
      const {r, d} = renormStepRef(ref(shape, xData), state, cfg);
      expect(r.some((v) => v !== 1)).toBe(true);
      expect(d.some((v) => v !== 0)).toBe(true);
      const loss = (xs: number[], g: number[], b: number[]) =>
        weightedSum(renormStepRef(ref(shape, xs), {...state, gamma: g, beta: b}, cfg, {r, d}).y.data, w);
      const xv = tf.variable(tf.tensor(xData, shape));
      const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
      const wT = tf.tensor(w, shape);
      const {grads} = tf.variableGrads(
          () => tf.sum(tf.mul(layer.apply(xv, {training: true}) as tf.Tensor, wT)) as tf.Scalar, [xv, ...vars]);
      expect(maxRelError(grads[xv.name].dataSync(), centralDifferences((v) => loss(v, gamma, beta), xData)))
          .toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[0].name].dataSync(), centralDifferences((v) => loss(xData, v, beta), gamma)))
          .toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[1].name].dataSync(), centralDifferences((v) => loss(xData, gamma, v), beta)))
          .toBeLessThan(2e-3);
    });
  }
});

function denseModel(norm: tfl.layers.Layer): tfl.Sequential {
  const model = tfl.sequential();
  model.add(tfl.layers.dense({units: 6, inputShape: [4]}));
  model.add(norm);
  model.add(tfl.layers.dense({units: 2}));
  model.compile({optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError'});
  return model;
}

describe('BatchRenormLayer in a model', () => {
  const xs = tf.tensor(randomData(64, 41, 2, 3), [16, 4]);
  const ys = tf.tensor(randomData(32, 43), [16, 2]);

  it('trains inside tf.sequential with fit: the loss falls, the statistics move, predict uses them', async () => {
    const layer = new BatchRenormLayer({momentum: 0.8, renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}});
    const model = denseModel(layer);
    const history = await model.fit(xs, ys, {epochs: 10, batchSize: 4, verbose: 0});
    const loss = history.history.loss as number[];
    expect(loss[loss.length - 1]).toBeLessThan(loss[0]);
    const [gamma, beta, mm, mv, , rm] = layer.getWeights().map((w) => Array.from(w.dataSync()));
    expect(mm.some((v) => v !== 0)).toBe(true);
    expect(rm.some((v) => v !== 0)).toBe(true);
    const h = tf.tensor(randomData(24, 45, 1, 2), [4, 6]);
    const expected = normalizeRef(ref([4, 6], h.dataSync()), 1, mm, mv, 1e-3, gamma, beta);
    expect(maxRelError((layer.apply(h) as tf.Tensor).dataSync(), expected.data)).toBeLessThan(1e-5);
  });

  it('trainable: false freezes all statistics during fit and uses the moving ones', async () => {
    const layer = new BatchRenormLayer({trainable: false, renormWarmup: {plainSteps: 1, rmaxReachedAt: 2, dmaxReachedAt: 2},
      renormClipping: {rmax: 2, dmax: 1}});
    const model = denseModel(layer);
    model.predict(xs);
    const before = layer.getWeights().map((w) => Array.from(w.dataSync()));
    await model.fit(xs, ys, {epochs: 2, batchSize: 8, verbose: 0});
    expect(layer.getWeights().map((w) => Array.from(w.dataSync()))).toEqual(before);
  });

  it('save and load is bit-exact, and the reloaded model resumes the warm-up where it stopped', async () => {
    const make = () => new BatchRenormLayer({name: 'brn', momentum: 0.8, renormMomentum: 0.9,
      renormClipping: {rmax: 2, rmin: 0.5, dmax: 1}, renormWarmup: {plainSteps: 2, rmaxReachedAt: 20, dmaxReachedAt: 10}});
    const model = denseModel(make());
    await model.fit(xs, ys, {epochs: 1, batchSize: 4, verbose: 0, shuffle: false});
    const {loaded, artifacts} = await roundTrip(model);
    expect(artifacts.weightSpecs!.map((s) => s.name).filter((n) => n.startsWith('brn/')))
        .toEqual([...KERAS_WEIGHTS, 'renorm_step'].map((n) => `brn/${n}`));
    const brn = loaded.layers[1] as BatchRenormLayer;
    expect(brn).toBeInstanceOf(BatchRenormLayer);
    expect(brn.getConfig()).toEqual(model.layers[1].getConfig());
    expect(brn.renormStep!.read().dataSync()[0]).toBe(4);
    expectIdenticalWeights(model, loaded);
    expect(bits(loaded.predict(xs) as tf.Tensor).equals(bits(model.predict(xs) as tf.Tensor))).toBe(true);
    // Both continue from step 4 of the schedule and stay identical.
    loaded.compile({optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError'});
    for (const m of [model, loaded]) await m.fit(xs, ys, {epochs: 2, batchSize: 4, verbose: 0, shuffle: false});
    expect(brn.renormStep!.read().dataSync()[0]).toBe(12);
    expectIdenticalWeights(model, loaded);
  });

  it('without a warm-up the layer holds exactly the seven Keras weights, and they round-trip bit-exact', async () => {
    const model = denseModel(new BatchRenormLayer({name: 'brn7', renormClipping: {rmax: 3}}));
    await model.fit(xs, ys, {epochs: 1, batchSize: 8, verbose: 0});
    const {loaded, artifacts} = await roundTrip(model);
    expect(artifacts.weightSpecs!.map((s) => s.name).filter((n) => n.startsWith('brn7/')))
        .toEqual(KERAS_WEIGHTS.map((n) => `brn7/${n}`));
    expectIdenticalWeights(model, loaded);
  });

  it('tf.memory().numTensors stays flat over 300 training steps with the warm-up on', () => {
    const layer = built([8, 4], {renormClipping: {rmax: 2, dmax: 1}, renormWarmup: {plainSteps: 10, rmaxReachedAt: 100, dmaxReachedAt: 50}});
    const x = tf.tensor(randomData(32, 3, 1, 2), [8, 4]);
    const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
    const step = () => tf.tidy(() => {
      tf.variableGrads(() => tf.sum(tf.square(layer.apply(x, {training: true}) as tf.Tensor)) as tf.Scalar, vars);
    });
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 300; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    expect(layer.renormStep!.read().dataSync()[0]).toBe(100);
  });
});

describe('BatchRenormLayer config and errors', () => {
  it('getConfig holds the renorm fields (only the given clipping keys) and fromConfig rebuilds the layer', () => {
    const layer = new BatchRenormLayer({name: 'brn_cfg', axis: 1, momentum: 0.9, renormMomentum: 0.95,
      renormClipping: {rmax: 3, dmax: 5}, renormWarmup: {plainSteps: 5, rmaxReachedAt: 40, dmaxReachedAt: 25}});
    const config = layer.getConfig();
    expect(config).toMatchObject({axis: 1, momentum: 0.9, renormMomentum: 0.95, renormClipping: {rmax: 3, dmax: 5},
      renormWarmup: {plainSteps: 5, rmaxReachedAt: 40, dmaxReachedAt: 25}, unbiasedVariance: false});
    expect(Object.keys(config.renormClipping as object)).toEqual(['rmax', 'dmax']);
    expect(batchRenorm().getConfig()).not.toHaveProperty('renormWarmup');
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap['BatchRenormLayer'];
    const copy = fromConfig(cls, JSON.parse(JSON.stringify(config))) as BatchRenormLayer;
    expect(copy.getConfig()).toEqual(config);
  });

  const bad: Array<[Record<string, unknown>, RegExp | string]> = [
    [{renormClipping: {rmax: 0.5, rmin: 1}}, /BatchRenormLayer '.*': invalid renormClipping \{"rmax":0.5,"rmin":1\}; rmax \(0.5\) must be >= rmin \(1\)/],
    [{renormClipping: {rmax: -1}}, /rmax \(-1\) must be >= rmin \(0, the default\)/],
    [{renormClipping: {rmin: -0.1}}, /invalid renormClipping.rmin -0.1; expected a finite number >= 0/],
    [{renormClipping: {dmax: -1}}, /invalid renormClipping.dmax -1; expected a finite number >= 0/],
    [{renormClipping: {rmax: Infinity}}, /invalid renormClipping.rmax Infinity; expected a finite number/],
    [{renormClipping: {dmax: NaN}}, /invalid renormClipping.dmax NaN/],
    [{renormClipping: {rmax: '3'}}, /invalid renormClipping.rmax "3"/],
    [{renormClipping: {rmax: 3, dmin: 1}}, /invalid renormClipping .*; unknown key 'dmin'; expected an object with optional keys rmax, rmin, dmax/],
    [{renormClipping: [3, 5]}, /invalid renormClipping \[3,5\]; expected an object with optional keys rmax, rmin, dmax/],
    [{renormClipping: 3}, /invalid renormClipping 3/],
    [{renormMomentum: 1.5}, /invalid renormMomentum 1.5; expected a finite number >= 0 and <= 1/],
    [{renormMomentum: '0.9'}, /invalid renormMomentum "0.9"/],
    [{renormWarmup: {plainSteps: 10, rmaxReachedAt: 5, dmaxReachedAt: 20}, renormClipping: {rmax: 3, dmax: 5}},
      /invalid renormWarmup.rmaxReachedAt 5; expected an integer >= 10/],
    [{renormWarmup: {plainSteps: 1.5, rmaxReachedAt: 5, dmaxReachedAt: 5}, renormClipping: {rmax: 3, dmax: 5}},
      /invalid renormWarmup.plainSteps 1.5; expected an integer >= 0/],
    [{renormWarmup: {plainSteps: 1, rmaxReachedAt: 5}, renormClipping: {rmax: 3, dmax: 5}},
      /invalid renormWarmup .*; missing key 'dmaxReachedAt'; expected an object with keys plainSteps, rmaxReachedAt, dmaxReachedAt/],
    [{renormWarmup: {plainSteps: 1, rmaxReachedAt: 5, dmaxReachedAt: 5, steps: 3}, renormClipping: {rmax: 3, dmax: 5}},
      /unknown key 'steps'/],
    [{renormWarmup: {plainSteps: 1, rmaxReachedAt: 5, dmaxReachedAt: 5}, renormClipping: {rmax: 3}},
      /invalid renormWarmup .*; the warm-up relaxes rmax and dmax linearly to their renormClipping values, so renormClipping must set both/],
    [{renorm: true}, /BatchRenormLayer: unknown config field 'renorm'/],
    [{momentum: 2}, /BatchRenormLayer '.*': invalid momentum 2/],
  ];
  for (const [config, message] of bad) {
    it(`rejects ${JSON.stringify(config)}`, () => {
      expect(() => new BatchRenormLayer(config as never)).toThrow(message);
    });
  }
});
