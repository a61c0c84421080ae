/**
 * Property-based tests: random ranks, axes, configs and batch sizes for
 * BatchNormLayer, BatchRenormLayer and GroupNormLayer, checked against float64
 * references (test/helpers) on the cpu backend (fused kernels where
 * registered) and on wasm (composite kernels).
 *
 * The generated values are plain configs (shape, axis, hyper-parameters, a
 * data seed), so a shrunk counterexample prints as a readable config; the
 * tensors are derived from the seed inside the property.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import fc from 'fast-check';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationLayer} from '../../src';
import {useBackend} from '../helpers/backends';
import {channelMoments, maxRelError, normalizeRef, randomData, ref, Ref} from '../helpers/reference';
import {centralDifferences, groupNormRef, renormStepRef, weightedSum} from '../helpers/variant_reference';

// CI runs one fixed seed, so a red run reproduces exactly; elsewhere every run
// explores new cases (fast-check prints the seed of a failure; FC_SEED=<seed> replays it).
const seed = process.env.FC_SEED != null ? Number(process.env.FC_SEED) : process.env.CI ? 20261129 : undefined;
if (seed != null) fc.configureGlobal({seed});

type Kind = 'BN' | 'BRN' | 'GN';

interface Case {
  kind: Kind;
  shape: number[];
  axis: number;
  epsilon: number;
  center: boolean;
  scale: boolean;
  seed: number;
  /** BN and BRN. */
  momentum?: number;
  /** BRN. */
  renormMomentum?: number;
  renormClipping?: {rmin?: number; rmax?: number; dmax?: number};
  /** GN: a divisor of the channel count, or -1. */
  groups?: number;
}

const optional = (arb: fc.Arbitrary<number>) => fc.option(arb, {nil: undefined});

/** A random case; channels sit on a random non-batch axis, given negative half the time. */
function caseArb(kind: Kind, maxBatch: number, maxDim: number): fc.Arbitrary<Case> {
  return fc.integer({min: 2, max: 5}).chain((rank) => fc.record({
    batch: fc.integer({min: 1, max: maxBatch}),
    channels: fc.integer({min: 1, max: 8}),
    spatial: fc.array(fc.integer({min: 1, max: maxDim}), {minLength: rank - 2, maxLength: rank - 2}),
    axis: fc.integer({min: 1, max: rank - 1}),
    negativeAxis: fc.boolean(),
    logEpsilon: fc.double({min: -5, max: -1, noNaN: true}),
    center: fc.boolean(),
    scale: fc.boolean(),
    seed: fc.integer({min: 1, max: 1 << 30}),
    momentum: fc.double({min: 0, max: 1, noNaN: true}),
    renormMomentum: fc.double({min: 0, max: 1, noNaN: true}),
    rmin: optional(fc.double({min: 0, max: 1, noNaN: true})),
    rmax: optional(fc.double({min: 1, max: 3, noNaN: true})),
    dmax: optional(fc.double({min: 0, max: 3, noNaN: true})),
    groupPick: fc.nat(),
  })).map((g) => {
    const shape = [g.batch, ...g.spatial.slice(0, g.axis - 1), g.channels, ...g.spatial.slice(g.axis - 1)];
    const c: Case = {
      kind, shape, axis: g.negativeAxis ? g.axis - shape.length : g.axis, epsilon: 10 ** g.logEpsilon,
      center: g.center, scale: g.scale, seed: g.seed,
    };
    if (kind !== 'GN') c.momentum = g.momentum;
    if (kind === 'BRN') {
      c.renormMomentum = g.renormMomentum;
      c.renormClipping = {};
      for (const key of ['rmin', 'rmax', 'dmax'] as const) if (g[key] != null) c.renormClipping[key] = g[key];
    }
    if (kind === 'GN') {
      const choices = [-1, ...Array.from({length: g.channels}, (_, i) => i + 1).filter((d) => g.channels % d === 0)];
      c.groups = choices[g.groupPick % choices.length];
    }
    return c;
  });
}

const sizeOf = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const resolved = (c: Case) => c.axis < 0 ? c.axis + c.shape.length : c.axis;
const channelsOf = (c: Case) => c.shape[resolved(c)];
const valuesPerChannel = (c: Case) => sizeOf(c.shape) / channelsOf(c);
const shortName = (w: tfl.LayerVariable) => w.originalName.split('/').pop()!;
/** GN whose groups hold one value per sample (Wu & He: the output would be β whatever x): refused at build. */
const oneValueGroups = (c: Case) => c.kind === 'GN' &&
    channelsOf(c) / (c.groups === -1 ? channelsOf(c) : c.groups!) * valuesPerChannel(c) / c.shape[0] === 1;

function layerFor(c: Case): NormalizationLayer {
  const common = {axis: c.axis, epsilon: c.epsilon, center: c.center, scale: c.scale};
  switch (c.kind) {
    case 'BN': return new BatchNormLayer({...common, momentum: c.momentum});
    case 'BRN': return new BatchRenormLayer({
      ...common, momentum: c.momentum, renormMomentum: c.renormMomentum, renormClipping: c.renormClipping,
    });
    case 'GN': return new GroupNormLayer({...common, groups: c.groups});
  }
}

/** The case's layer, built, with every weight set to seeded random values (variances and stddevs positive). */
function makeLayer(c: Case): {layer: NormalizationLayer; weights: Record<string, number[]>} {
  const layer = layerFor(c);
  layer.apply(tfl.input({batchShape: [null, ...c.shape.slice(1)]}));
  const weights: Record<string, number[]> = {};
  const values = layer.weights.map((w, i) => {
    const positive = /variance|stddev/.test(shortName(w));
    weights[shortName(w)] = Array.from(randomData(w.shape[0]!, c.seed + 101 * i, positive ? 1.5 : 0.5, positive ? 0.5 : 1));
    return tf.tensor1d(weights[shortName(w)]);
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
  for (const w of layer.weights) out[shortName(w)] = Array.from(w.read().dataSync());
  return out;
}

interface Step {
  y: Ref;
  /** Expected weights after the step, by weight name. */
  weights: Record<string, number[]>;
  /** BRN's corrections, constants for the gradient. */
  fixed?: {r: number[]; d: number[]};
}

/** One training step of the case's layer in float64, from weights `w`. */
function reference(c: Case, x: Ref, w: Record<string, number[]>, fixed?: Step['fixed']): Step {
  const axis = resolved(c);
  const ch = channelsOf(c);
  const gamma = w.gamma ?? new Array(ch).fill(1);
  const beta = w.beta ?? new Array(ch).fill(0);
  if (c.kind === 'GN') return {y: groupNormRef(x, axis, c.groups!, c.epsilon, gamma, beta).y, weights: w};
  if (c.kind === 'BN') {
    const m = channelMoments(x, axis);
    const ema = (old: number[], v: number[]) => old.map((o, k) => c.momentum! * o + (1 - c.momentum!) * v[k]);
    return {
      y: normalizeRef(x, axis, m.mean, m.variance, c.epsilon, gamma, beta),
      weights: {...w, moving_mean: ema(w.moving_mean, m.mean), moving_variance: ema(w.moving_variance, m.variance)},
    };
  }
  const clip = c.renormClipping!;
  const step = renormStepRef(x, {
    gamma, beta, movingMean: w.moving_mean, movingVariance: w.moving_variance, movingStddev: w.moving_stddev,
    renormMean: w.renorm_mean, renormStddev: w.renorm_stddev,
  }, {
    axis, eps: c.epsilon, momentum: c.momentum!, renormMomentum: c.renormMomentum!,
    rmin: clip.rmin ?? 0, rmax: clip.rmax ?? Infinity, dmax: clip.dmax ?? Infinity,
  }, fixed);
  const n = step.next;
  return {
    y: step.y,
    fixed: {r: step.r, d: step.d},
    weights: {
      ...w, moving_mean: n.movingMean, moving_variance: n.movingVariance, moving_stddev: n.movingStddev,
      renorm_mean: n.renormMean, renorm_stddev: n.renormStddev,
    },
  };
}

/**
 * BN and BRN with one value per channel in training: normalized with the moving
 * statistics, every weight unchanged (the documented default).
 */
function oneValueReference(c: Case, x: Ref, w: Record<string, number[]>): Step {
  const ch = channelsOf(c);
  return {
    y: normalizeRef(x, resolved(c), w.moving_mean, w.moving_variance, c.epsilon,
        w.gamma ?? new Array(ch).fill(1), w.beta ?? new Array(ch).fill(0)),
    weights: w,
  };
}

function checkForward(c: Case): void {
  const before = tf.memory().numTensors;
  if (oneValueGroups(c)) {
    expect(() => makeLayer(c)).toThrow(/each group holds one value per sample/);
    expect(tf.memory().numTensors).toBe(before);
    return;
  }
  const {layer, weights} = makeLayer(c);
  const x = inputOf(c);
  const xT = tf.tensor(x, c.shape);
  try {
    const y = layer.apply(xT, {training: true}) as tf.Tensor;
    const got = y.dataSync();
    y.dispose();
    const expected = c.kind !== 'GN' && valuesPerChannel(c) < 2 ?
        oneValueReference(c, ref(c.shape, x), weights) : reference(c, ref(c.shape, x), weights);
    expect(maxRelError(got, expected.y.data)).toBeLessThan(1e-4);
    // Lists the weights off by more than 1e-4 relative, by name.
    const after = weightValues(layer);
    expect(Object.keys(after).map((name) => [name, maxRelError(after[name], expected.weights[name])])
        .filter(([, e]) => !((e as number) < 1e-4))).toEqual([]);
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

const valOf = (v: tfl.LayerVariable) => (v as unknown as {val: tf.Variable}).val;

function checkGradients(c: Case): void {
  const before = tf.memory().numTensors;
  const {layer, weights} = makeLayer(c);
  const xData = Array.from(inputOf(c));
  const w = randomData(xData.length, c.seed + 7);
  const xVar = tf.tidy(() => tf.variable(tf.tensor(xData, c.shape)));
  const wT = tf.tensor(w, c.shape);
  try {
    const params = [layer.gamma, layer.beta].map((v) => v == null ? null : valOf(v));
    // One pass for all three: BRN's r and d depend on the renorm statistics before the step.
    const {grads, value} = tf.variableGrads(
        () => tf.sum(tf.mul(layer.apply(xVar, {training: true}) as tf.Tensor, wT)) as tf.Scalar,
        [xVar, ...params.filter((p): p is tf.Variable => p != null)]);
    value.dispose();
    const [dx, dGamma, dBeta] = [xVar, ...params].map((v) => v == null ? null : Array.from(grads[v.name].dataSync()));
    tf.dispose(grads);
    const fixed = reference(c, ref(c.shape, xData), weights).fixed;
    const loss = (xs: number[], affine: Record<string, number[]>) =>
      weightedSum(reference(c, ref(c.shape, xs), {...weights, ...affine}, fixed).y.data, w);
    const probes = probeIndices(xData.length);
    const atProbes = (p: number[]) => { const xs = [...xData]; probes.forEach((i, k) => { xs[i] = p[k]; }); return xs; };
    expect(maxRelError(probes.map((i) => dx![i]),
        centralDifferences((p) => loss(atProbes(p), {}), probes.map((i) => xData[i])))).toBeLessThan(1e-3);
    if (dGamma) {
      expect(maxRelError(dGamma, centralDifferences((g) => loss(xData, {gamma: g}), weights.gamma))).toBeLessThan(1e-3);
    }
    if (dBeta) {
      expect(maxRelError(dBeta, centralDifferences((b) => loss(xData, {beta: b}), weights.beta))).toBeLessThan(1e-3);
    }
  } finally {
    tf.dispose([xVar, wT]);
    layer.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

const KINDS: Kind[] = ['BN', 'BRN', 'GN'];

// Counterexamples found earlier, always tried first: a dmax that rounds to 0 in
// float32 (wasm's clipByValue returned uninitialized memory) and groups of one value.
const REGRESSIONS: Case[] = [
  {kind: 'BRN', shape: [2, 3], axis: 1, epsilon: 0.1, center: false, scale: false, seed: 1, momentum: 0,
    renormMomentum: 0, renormClipping: {rmax: 1.8254790972400932, dmax: 9.4e-323}},
  {kind: 'GN', shape: [2, 1], axis: 1, epsilon: 0.1, center: false, scale: false, seed: 1, groups: -1},
];
const regressions = (kind: Kind) => REGRESSIONS.filter((c) => c.kind === kind).map((c): [Case] => [c]);

describe.each(['cpu', 'wasm'])('properties on the %s backend', (backend) => {
  useBackend(backend);

  for (const kind of KINDS) {
    it(`${kind}: training output and weight updates match the float64 reference`, () => {
      fc.assert(fc.property(caseArb(kind, 64, 3), checkForward), {numRuns: 60, examples: regressions(kind)});
    });

    it(`${kind}: dx, dgamma, dbeta match finite differences of the float64 reference`, () => {
      const trainable = caseArb(kind, 6, 3).filter((c) =>
        kind === 'GN' ? !oneValueGroups(c) : valuesPerChannel(c) >= 2);
      fc.assert(fc.property(trainable, checkGradients),
          {numRuns: 25, examples: regressions(kind).filter(([c]) => !oneValueGroups(c))});
    });
  }

  it('BN and BRN with one value per channel use the moving statistics and keep them; GN trains unless ' +
      'its groups hold one value', () => {
    const oneValue = fc.constantFrom<Kind>(...KINDS).chain((kind) => caseArb(kind, 1, 1));
    fc.assert(fc.property(oneValue, (c) => {
      expect(valuesPerChannel(c)).toBe(1);
      checkForward(c);
    }), {numRuns: 20});
  });
});
