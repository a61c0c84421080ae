/**
 * Constraints (issue 11, item 4). Keras applies gammaConstraint/betaConstraint
 * after every optimizer update: w_{k+1} = P(w_k − lr·∇L(w_k)). tfjs's optimizers
 * never apply them. The reference below runs that sequence in float64 for a
 * BatchNormLayer trained alone (fixed inputs, so x̂ is fixed and the gradients
 * are closed-form): ∂L/∂γ_c = 2/(N·C)·Σ_n (y − t)·x̂, ∂L/∂β_c = 2/(N·C)·Σ_n (y − t)
 * for the mean squared error. The targets pull γ below 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as tfd from '@tensorflow/tfjs-data';
import {applyConstraints, BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationLayer,
  NormalizationLayerArgs} from '../../src';
import {channelMoments, maxRelError, randomData, ref} from '../helpers/reference';

const SAMPLES = 8;
const CHANNELS = 3;
const LR = 0.5;
const EPSILON = 1e-3;
const STEPS = 6;

const xData = randomData(SAMPLES * CHANNELS, 41, 1, 2);
const moments = channelMoments(ref([SAMPLES, CHANNELS], xData), 1);
const xHat = Array.from(xData, (v, i) => (v - moments.mean[i % CHANNELS]) / Math.sqrt(moments.variance[i % CHANNELS] + EPSILON));
// γ is pulled toward −1.5 (below the nonNeg bound), β toward a vector of norm > 0.5.
const targets = xHat.map((v, i) => -1.5 * v + [0.6, -0.4, 0.3][i % CHANNELS]);

type Projection = (w: number[]) => number[];
const nonNeg: Projection = (w) => w.map((v) => Math.max(v, 0));
/** Keras's MaxNorm over the whole vector: w·clip(‖w‖, 0, m)/(ε + ‖w‖), ε = 1e-7 (Keras's backend epsilon). */
const maxNorm = (m: number): Projection => (w) => {
  const norm = Math.sqrt(w.reduce((a, v) => a + v * v, 0));
  return w.map((v) => v * Math.min(norm, m) / (1e-7 + norm));
};
/** Keras's MinMaxNorm: w·(rate·clip(‖w‖, lo, hi) + (1 − rate)·‖w‖)/(ε + ‖w‖); not idempotent for rate < 1. */
const minMaxNorm = (lo: number, hi: number, rate: number): Projection => (w) => {
  const norm = Math.sqrt(w.reduce((a, v) => a + v * v, 0));
  const desired = rate * Math.min(Math.max(norm, lo), hi) + (1 - rate) * norm;
  return w.map((v) => v * desired / (1e-7 + norm));
};

/** γ and β after each of `steps` projected SGD steps (Keras's order: update, then project). */
function kerasTrajectory(steps: number, projectGamma: Projection, projectBeta: Projection) {
  let gamma = new Array(CHANNELS).fill(1);
  let beta = new Array(CHANNELS).fill(0);
  const trajectory: Array<{gamma: number[]; beta: number[]}> = [];
  for (let step = 0; step < steps; step++) {
    const dGamma = new Array(CHANNELS).fill(0);
    const dBeta = new Array(CHANNELS).fill(0);
    xHat.forEach((v, i) => {
      const c = i % CHANNELS;
      const residual = gamma[c] * v + beta[c] - targets[i];
      dGamma[c] += 2 * residual * v / (SAMPLES * CHANNELS);
      dBeta[c] += 2 * residual / (SAMPLES * CHANNELS);
    });
    gamma = projectGamma(gamma.map((g, c) => g - LR * dGamma[c]));
    beta = projectBeta(beta.map((b, c) => b - LR * dBeta[c]));
    trajectory.push({gamma, beta});
  }
  return trajectory;
}

function model(layer: NormalizationLayer): tfl.Sequential {
  const m = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: [CHANNELS]}), layer]});
  m.compile({optimizer: tf.train.sgd(LR), loss: 'meanSquaredError'});
  return m;
}

const weights = (layer: NormalizationLayer) =>
  ({gamma: Array.from(layer.gamma!.read().dataSync()), beta: Array.from(layer.beta!.read().dataSync())});

function expectClose(got: {gamma: number[]; beta: number[]}, expected: {gamma: number[]; beta: number[]}): void {
  for (const key of ['gamma', 'beta'] as const) {
    got[key].forEach((v, c) => expect(Math.abs(v - expected[key][c])).toBeLessThan(1e-5));
  }
}

const constrained = (kind: 'BN' | 'BRN' | 'GN', gammaConstraint: NormalizationLayerArgs['gammaConstraint'],
    betaConstraint: NormalizationLayerArgs['betaConstraint']) => {
  const args = {epsilon: EPSILON, gammaConstraint, betaConstraint, momentum: 0.5};
  if (kind === 'BN') return new BatchNormLayer(args);
  // Renorm with r = 1, d = 0 (rmin = rmax = 1, dmax = 0) trains exactly like BN.
  if (kind === 'BRN') return new BatchRenormLayer({...args, renormClipping: {rmin: 1, rmax: 1, dmax: 0}});
  return new GroupNormLayer({epsilon: EPSILON, gammaConstraint, betaConstraint, groups: CHANNELS});
};

describe('constraints hold after every step of fit (Keras: projected after each optimizer update)', () => {
  for (const kind of ['BN', 'BRN'] as const) {
    it(`${kind}: nonNeg gamma, maxNorm beta: every step equals Keras's projected SGD (float64)`, async () => {
      const layer = constrained(kind, 'nonNeg', tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));
      const m = model(layer);
      const expected = kerasTrajectory(STEPS, nonNeg, maxNorm(0.5));
      expect(expected[STEPS - 1].gamma.some((v) => v === 0)).toBe(true);
      const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
      const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
      const seen: Array<{gamma: number[]; beta: number[]}> = [];
      await m.fit(x, y, {batchSize: SAMPLES, epochs: STEPS, shuffle: false, verbose: 0,
        callbacks: {onBatchEnd: () => { seen.push(weights(layer)); }}});
      expect(seen).toHaveLength(STEPS);
      seen.forEach((got, step) => {
        expect(Math.min(...got.gamma)).toBeGreaterThanOrEqual(0);
        expectClose(got, expected[step]);
      });
      tf.dispose([x, y]);
    });
  }

  it('a constraint that is not idempotent (minMaxNorm rate 0.5) is applied once per update', async () => {
    const layer = constrained('BN', tfl.constraints.minMaxNorm({minValue: 0, maxValue: 0.8, rate: 0.5, axis: 0}),
        tfl.constraints.minMaxNorm({minValue: 0, maxValue: 0.2, rate: 0.5, axis: 0}));
    const m = model(layer);
    const expected = kerasTrajectory(STEPS, minMaxNorm(0, 0.8, 0.5), minMaxNorm(0, 0.2, 0.5));
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    await m.fit(x, y, {batchSize: SAMPLES, epochs: STEPS, shuffle: false, verbose: 0});
    expectClose(weights(layer), expected[STEPS - 1]);
    tf.dispose([x, y]);
  });

  it('GroupNormLayer: nonNeg gamma holds after every step of fit', async () => {
    const layer = constrained('GN', 'nonNeg', tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));
    const gn = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: [2, CHANNELS]}), layer]});
    gn.compile({optimizer: tf.train.sgd(LR), loss: 'meanSquaredError'});
    // Each channel's group is {x, −x}: x̂ has the sign of the input, and the targets the opposite one.
    const x = tf.tensor3d(xData, [SAMPLES, 1, CHANNELS]);
    const wide = tf.concat([x, tf.neg(x)], 1);
    const targets = tf.neg(wide);
    const minima: number[] = [];
    await gn.fit(wide, targets, {batchSize: SAMPLES, epochs: STEPS, verbose: 0,
      callbacks: {onBatchEnd: () => { minima.push(Math.min(...weights(layer).gamma)); }}});
    expect(minima).toHaveLength(STEPS);
    expect(Math.min(...minima)).toBe(0);
    tf.dispose([x, wide, targets]);
  });

  it('fitDataset: checked after every step', async () => {
    const layer = constrained('BN', 'nonNeg', tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));
    const m = model(layer);
    const expected = kerasTrajectory(STEPS, nonNeg, maxNorm(0.5));
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    const dataset = tfd.zip({xs: tfd.array([x]), ys: tfd.array([y])});
    const seen: Array<{gamma: number[]; beta: number[]}> = [];
    await m.fitDataset(dataset as tfd.Dataset<{xs: tf.Tensor; ys: tf.Tensor}>, {epochs: STEPS, verbose: 0,
      callbacks: {onBatchEnd: () => { seen.push(weights(layer)); }}});
    expect(seen).toHaveLength(STEPS);
    seen.forEach((got, step) => expectClose(got, expected[step]));
    tf.dispose([x, y]);
  });
});

describe('trainOnBatch and custom loops: every computation uses the projected weights', () => {
  it('trainOnBatch, with applyConstraints after each step: the weights hold and equal Keras\'s', async () => {
    const layer = constrained('BN', 'nonNeg', tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));
    const m = model(layer);
    const expected = kerasTrajectory(STEPS, nonNeg, maxNorm(0.5));
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    for (let step = 0; step < STEPS; step++) {
      await m.trainOnBatch(x, y);
      applyConstraints(m);
      expect(Math.min(...weights(layer).gamma)).toBeGreaterThanOrEqual(0);
      expectClose(weights(layer), expected[step]);
    }
    tf.dispose([x, y]);
  });

  it('trainOnBatch and optimizer.minimize without applyConstraints between steps: the same trajectory', async () => {
    const expected = kerasTrajectory(STEPS, minMaxNorm(0, 0.8, 0.5), maxNorm(0.5));
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    const make = () => constrained('BN', tfl.constraints.minMaxNorm({minValue: 0, maxValue: 0.8, rate: 0.5, axis: 0}),
        tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));

    const viaTrainOnBatch = make();
    const m = model(viaTrainOnBatch);
    for (let step = 0; step < STEPS; step++) await m.trainOnBatch(x, y);
    applyConstraints(m);
    expectClose(weights(viaTrainOnBatch), expected[STEPS - 1]);

    const viaMinimize = make();
    const custom = model(viaMinimize);
    const optimizer = tf.train.sgd(LR);
    for (let step = 0; step < STEPS; step++) {
      optimizer.minimize(() => tf.losses.meanSquaredError(y, custom.apply(x, {training: true}) as tf.Tensor,
          undefined, tf.Reduction.MEAN) as tf.Scalar);
    }
    applyConstraints(custom);
    expectClose(weights(viaMinimize), expected[STEPS - 1]);
    optimizer.dispose();
    tf.dispose([x, y]);
  });

  it('projection leaves no tensors behind', async () => {
    const layer = constrained('BN', 'nonNeg', tfl.constraints.maxNorm({maxValue: 0.5, axis: 0}));
    const m = model(layer);
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    await m.fit(x, y, {batchSize: SAMPLES, epochs: 1, verbose: 0});
    const before = tf.memory().numTensors;
    await m.fit(x, y, {batchSize: SAMPLES, epochs: 2, verbose: 0});
    await m.trainOnBatch(x, y);
    applyConstraints(m);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  });
});

describe('sanity: the reference really crosses the bounds without projection', () => {
  it('unconstrained, gamma goes negative and beta exceeds norm 0.5 under the same fit', async () => {
    const layer = new BatchNormLayer({epsilon: EPSILON});
    const m = model(layer);
    const free = kerasTrajectory(STEPS, (w) => w, (w) => w)[STEPS - 1];
    const x = tf.tensor2d(xData, [SAMPLES, CHANNELS]);
    const y = tf.tensor2d(targets, [SAMPLES, CHANNELS]);
    await m.fit(x, y, {batchSize: SAMPLES, epochs: STEPS, shuffle: false, verbose: 0});
    expect(Math.min(...free.gamma)).toBeLessThan(0);
    expect(Math.hypot(...free.beta)).toBeGreaterThan(0.5);
    expect(maxRelError(Float32Array.from(weights(layer).gamma), free.gamma)).toBeLessThan(1e-4);
    tf.dispose([x, y]);
  });
});
