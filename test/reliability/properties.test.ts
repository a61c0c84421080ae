/**
 * Property-based tests: random ranks, axes, configs and batch sizes, checked
 * against the float64 references in ./reference64.ts on the cpu backend
 * (fused kernels where registered) and on wasm (composite kernels).
 *
 * The generated values are plain configs (shape, axis, hyper-parameters, a
 * data seed), so a shrunk counterexample prints as a readable config; the
 * tensors are derived from the seed inside the property.
 */
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import {BatchNormLayer, NormalizationLayer} from '../../src';
import {maxRelError, randomData, ref, Ref} from '../helpers/reference';
import {bnStep, finiteDifferences} from './reference64';

interface Case {
  kind: 'BN';
  shape: number[];
  axis: number;
  momentum: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  seed: number;
}

/** A random case; channels sit on a random non-batch axis, given negative half the time. */
function caseArb(kind: Case['kind'], maxBatch: number, maxDim: number): fc.Arbitrary<Case> {
  return fc.integer({min: 2, max: 5}).chain((rank) => fc.record({
    batch: fc.integer({min: 1, max: maxBatch}),
    channels: fc.integer({min: 1, max: 6}),
    spatial: fc.array(fc.integer({min: 1, max: maxDim}), {minLength: rank - 2, maxLength: rank - 2}),
    axis: fc.integer({min: 1, max: rank - 1}),
    negativeAxis: fc.boolean(),
    momentum: fc.double({min: 0, max: 1, noNaN: true}),
    logEpsilon: fc.double({min: -5, max: -1, noNaN: true}),
    center: fc.boolean(),
    scale: fc.boolean(),
    seed: fc.integer({min: 1, max: 1 << 30}),
  })).map((g) => {
    const rest = [...g.spatial];
    const shape = [g.batch, ...rest.slice(0, g.axis - 1), g.channels, ...rest.slice(g.axis - 1)];
    return {
      kind, shape, axis: g.negativeAxis ? g.axis - shape.length : g.axis, momentum: g.momentum,
      epsilon: 10 ** g.logEpsilon, center: g.center, scale: g.scale, seed: g.seed,
    };
  });
}

const sizeOf = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const resolved = (c: Case) => c.axis < 0 ? c.axis + c.shape.length : c.axis;
const channelsOf = (c: Case) => c.shape[resolved(c)];
const valuesPerChannel = (c: Case) => sizeOf(c.shape) / channelsOf(c);

/** The case's layer, built, with every weight set to seeded random values (variances positive). */
function makeLayer(c: Case): {layer: NormalizationLayer; weights: Record<string, number[]>} {
  const layer = new BatchNormLayer({
    axis: c.axis, momentum: c.momentum, epsilon: c.epsilon, center: c.center, scale: c.scale,
  });
  layer.apply(tfl.input({batchShape: [null, ...c.shape.slice(1)]}));
  const weights: Record<string, number[]> = {};
  const values = layer.weights.map((w, i) => {
    const name = w.originalName.split('/').pop()!;
    const positive = /variance|stddev/.test(name);
    weights[name] = Array.from(randomData(w.shape[0]!, c.seed + 101 * i, positive ? 1.5 : 0.5, positive ? 0.5 : 1));
    return tf.tensor1d(weights[name]);
  });
  layer.setWeights(values);
  tf.dispose(values);
  return {layer, weights};
}

/** Seeded float32 input data: mean in [-3, 3], spread in [0.5, 2.5]. */
function inputOf(c: Case): Float32Array {
  return randomData(sizeOf(c.shape), c.seed, (c.seed % 7) - 3, 0.5 + (c.seed % 5) / 2);
}

function weightValues(layer: NormalizationLayer): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const w of layer.weights) out[w.originalName.split('/').pop()!] = Array.from(w.read().dataSync());
  return out;
}

/** One training step on the layer; the reference's output and state after it. */
function reference(c: Case, x: Ref, w: Record<string, number[]>) {
  return bnStep(x, resolved(c), c.epsilon, c.momentum, w,
      {movingMean: w.moving_mean, movingVariance: w.moving_variance});
}

/** The documented error for batch statistics with one value per channel. */
const ONE_VALUE = /BatchNormLayer '.*': training needs more than one value per channel/;

function checkForward(c: Case): void {
  const before = tf.memory().numTensors;
  const {layer, weights} = makeLayer(c);
  const x = inputOf(c);
  const xT = tf.tensor(x, c.shape);
  try {
    if (valuesPerChannel(c) < 2) {
      expect(() => layer.apply(xT, {training: true})).toThrow(ONE_VALUE);
      return;
    }
    const y = layer.apply(xT, {training: true}) as tf.Tensor;
    const got = y.dataSync();
    y.dispose();
    const expected = reference(c, ref(c.shape, x), weights);
    expect(maxRelError(got, expected.y.data)).toBeLessThan(1e-4);
    const after = weightValues(layer);
    expect(maxRelError(after.moving_mean, expected.movingMean)).toBeLessThan(1e-4);
    expect(maxRelError(after.moving_variance, expected.movingVariance)).toBeLessThan(1e-4);
  } finally {
    xT.dispose();
    layer.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

/** Up to 6 spread-out indices of x: finite differences cost one reference pass each. */
function probeIndices(n: number): number[] {
  const k = Math.min(n, 6);
  return Array.from({length: k}, (_, i) => Math.floor((i * n) / k));
}

function checkGradients(c: Case): void {
  const before = tf.memory().numTensors;
  const {layer, weights} = makeLayer(c);
  const xData = Array.from(inputOf(c));
  const w = Array.from(randomData(xData.length, c.seed + 7));
  const xVar = tf.tidy(() => tf.variable(tf.tensor(xData, c.shape)));
  const wT = tf.tensor(w, c.shape);
  try {
    const vars = [xVar, ...[layer.gamma, layer.beta].filter((v) => v != null)
        .map((v) => (v as unknown as {val: tf.Variable}).val)];
    const {grads, value} = tf.variableGrads(
        () => tf.sum(tf.mul(layer.apply(xVar, {training: true}) as tf.Tensor, wT)) as tf.Scalar, vars);
    value.dispose();
    const [dx, dGamma, dBeta] = [xVar, layer.gamma, layer.beta].map((v) => v == null ? null :
        Array.from(grads[(v instanceof tf.Variable ? v : (v as unknown as {val: tf.Variable}).val).name].dataSync()));
    tf.dispose(grads);
    // Loss L = Σ w·y in float64, as a function of x, γ and β.
    const loss = (xs: number[], affine: {gamma?: number[]; beta?: number[]}) =>
      reference(c, ref(c.shape, xs), {...weights, ...affine}).y.data.reduce((s, v, i) => s + v * w[i], 0);
    const affine = {gamma: weights.gamma, beta: weights.beta};
    const probes = probeIndices(xData.length);
    expect(maxRelError(probes.map((i) => dx![i]),
        finiteDifferences((v) => loss(v, affine), xData, probes))).toBeLessThan(1e-3);
    if (dGamma) {
      expect(maxRelError(dGamma, finiteDifferences((g) => loss(xData, {...affine, gamma: g}), weights.gamma)))
          .toBeLessThan(1e-3);
    }
    if (dBeta) {
      expect(maxRelError(dBeta, finiteDifferences((b) => loss(xData, {...affine, beta: b}), weights.beta)))
          .toBeLessThan(1e-3);
    }
  } finally {
    tf.dispose([xVar, wT]);
    layer.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

const KINDS: Case['kind'][] = ['BN'];

describe.each(['cpu', 'wasm'])('properties on the %s backend', (backend) => {
  beforeAll(async () => {
    // IS_TEST's kernel leak check fails inside tfjs's own wasm kernels (test/setup.ts).
    tf.env().set('IS_TEST', backend !== 'wasm');
    await tf.setBackend(backend);
  });
  afterAll(async () => {
    tf.env().set('IS_TEST', true);
    await tf.setBackend('cpu');
  });

  for (const kind of KINDS) {
    it(`${kind}: training output and statistics updates match the float64 reference`, () => {
      fc.assert(fc.property(caseArb(kind, 64, 3), checkForward), {numRuns: 100});
    });

    it(`${kind}: dx, dgamma, dbeta match finite differences of the float64 reference`, () => {
      fc.assert(fc.property(caseArb(kind, 6, 3).filter((c) => valuesPerChannel(c) >= 2), checkGradients),
          {numRuns: 40});
    });
  }

  it('BN with one value per channel is always the documented error', () => {
    const oneValue = caseArb('BN', 1, 1);
    fc.assert(fc.property(oneValue, (c) => {
      expect(valuesPerChannel(c)).toBe(1);
      checkForward(c);
    }), {numRuns: 10});
  });
});
