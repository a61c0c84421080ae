import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {AddonsGroupNormalization, AddonsInstanceNormalization, GroupNormLayer, groupNorm, instanceNorm} from '../../src';
import {maxRelError, randomData, ref} from '../helpers/reference';
import {bits, expectIdenticalWeights, roundTrip} from '../helpers/round_trip';
import {centralDifferences, groupNormRef, weightedSum} from '../helpers/variant_reference';

// Ranks 2–5, channels-last and channels-first (rank 2 has only one channel axis).
const SHAPES: Array<{shape: number[]; axis: number}> = [
  {shape: [4, 6], axis: -1},
  {shape: [3, 5, 6], axis: -1},
  {shape: [3, 6, 5], axis: 1},
  {shape: [2, 3, 4, 6], axis: -1},
  {shape: [2, 6, 3, 4], axis: 1},
  {shape: [2, 2, 3, 2, 6], axis: -1},
  {shape: [2, 6, 2, 3, 2], axis: 1},
];

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const positive = (axis: number, rank: number) => axis < 0 ? axis + rank : axis;

function built(shape: number[], args: Record<string, unknown>): GroupNormLayer {
  const layer = new GroupNormLayer(args);
  layer.apply(tf.zeros(shape));
  return layer;
}

describe('GroupNormLayer forward against a float64 reference', () => {
  for (const {shape, axis} of SHAPES) {
    for (const groups of [1, 2, 6, -1]) {
      // Groups of one value per sample are refused (test/layers/group_norm_degenerate.test.ts).
      if (shape.length === 2 && groups !== 1 && groups !== 2) continue;
      it(`shape [${shape}] axis ${axis} groups ${groups}: training and inference give the reference`, () => {
        const a = positive(axis, shape.length);
        const xData = randomData(size(shape), shape.length + groups + 10, 3, 2);
        const gamma = Array.from(randomData(6, 21, 1, 0.3));
        const beta = Array.from(randomData(6, 23));
        const layer = built(shape, {axis, groups, epsilon: 1e-3});
        layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta)]);
        const x = tf.tensor(xData, shape);
        const expected = groupNormRef(ref(shape, xData), a, groups, 1e-3, gamma, beta).y.data;
        const training = layer.apply(x, {training: true}) as tf.Tensor;
        expect(maxRelError(training.dataSync(), expected)).toBeLessThan(1e-5);
        // No moving statistics: inference is the same computation.
        expect(bits(layer.apply(x) as tf.Tensor).equals(bits(training))).toBe(true);
      });
    }
  }

  for (const [center, scale] of [[false, true], [true, false], [false, false]]) {
    it(`center: ${center}, scale: ${scale}: weights and output`, () => {
      const shape = [3, 4, 8];
      const xData = randomData(96, 31, -2, 4);
      const layer = built(shape, {groups: 4, center, scale});
      expect(layer.weights.map((w) => w.originalName.split('/').pop()))
          .toEqual([...(scale ? ['gamma'] : []), ...(center ? ['beta'] : [])]);
      const gamma = Array.from(randomData(8, 33, 1, 0.5));
      const beta = Array.from(randomData(8, 35));
      layer.setWeights([...(scale ? [tf.tensor1d(gamma)] : []), ...(center ? [tf.tensor1d(beta)] : [])]);
      const y = layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor;
      const expected = groupNormRef(ref(shape, xData), 2, 4, 1e-3, scale ? gamma : undefined, center ? beta : undefined);
      expect(maxRelError(y.dataSync(), expected.y.data)).toBeLessThan(1e-5);
    });
  }

  it('batch 1 trains (statistics are per sample)', () => {
    const layer = built([1, 6], {groups: 2});
    const xData = randomData(6, 37, 1, 2);
    const y = layer.apply(tf.tensor(xData, [1, 6]), {training: true}) as tf.Tensor;
    expect(maxRelError(y.dataSync(), groupNormRef(ref([1, 6], xData), 1, 2, 1e-3).y.data)).toBeLessThan(1e-5);
  });

  it('instanceNorm is one group per channel; the default is 32 groups', () => {
    const shape = [2, 3, 3, 64];
    const xData = randomData(size(shape), 39, 0, 2);
    const inst = instanceNorm();
    const y = inst.apply(tf.tensor(xData, shape)) as tf.Tensor;
    expect(maxRelError(y.dataSync(), groupNormRef(ref(shape, xData), 3, 64, 1e-3).y.data)).toBeLessThan(1e-5);
    const dflt = groupNorm();
    expect(dflt.groups).toBe(32);
    const y32 = dflt.apply(tf.tensor(xData, shape)) as tf.Tensor;
    expect(maxRelError(y32.dataSync(), groupNormRef(ref(shape, xData), 3, 32, 1e-3).y.data)).toBeLessThan(1e-5);
  });
});

describe('GroupNormLayer gradients against central finite differences of the float64 reference', () => {
  for (const [{shape, axis}, groups] of [[SHAPES[0], 3], [SHAPES[2], 2], [SHAPES[4], -1]] as const) {
    it(`dx, dgamma, dbeta for shape [${shape}] axis ${axis} groups ${groups}`, () => {
      const a = positive(axis, shape.length);
      const n = size(shape);
      const xData = Array.from(randomData(n, 41, 0.5, 1.5));
      const w = Array.from(randomData(n, 43));
      const gamma = Array.from(randomData(6, 45, 1, 0.3));
      const beta = Array.from(randomData(6, 47));
      const loss = (xs: number[], g: number[], b: number[]) =>
        weightedSum(groupNormRef(ref(shape, xs), a, groups, 1e-3, g, b).y.data, w);
      const layer = built(shape, {axis, groups});
      layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta)]);
      const wT = tf.tensor(w, shape);
      const lossOf = (x: tf.Tensor) => tf.sum(tf.mul(layer.apply(x, {training: true}) as tf.Tensor, wT)) as tf.Scalar;
      const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
      const {grads} = tf.variableGrads(() => lossOf(tf.tensor(xData, shape)), vars);
      const dx = tf.grad(lossOf)(tf.tensor(xData, shape));
      expect(maxRelError(dx.dataSync(), centralDifferences((v) => loss(v, gamma, beta), xData))).toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[0].name].dataSync(), centralDifferences((v) => loss(xData, v, beta), gamma)))
          .toBeLessThan(2e-3);
      expect(maxRelError(grads[vars[1].name].dataSync(), centralDifferences((v) => loss(xData, gamma, v), beta)))
          .toBeLessThan(2e-3);
    });
  }
});

function convModel(norm: tfl.layers.Layer): tfl.Sequential {
  const model = tfl.sequential();
  model.add(tfl.layers.conv2d({filters: 8, kernelSize: 3, inputShape: [6, 6, 2], kernelInitializer: 'glorotUniform'}));
  model.add(norm);
  model.add(tfl.layers.flatten());
  model.add(tfl.layers.dense({units: 2}));
  model.compile({optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError'});
  return model;
}

describe('GroupNormLayer in a model', () => {
  it('trains inside tf.sequential with fit (the loss falls) and gamma/beta move', async () => {
    const model = convModel(new GroupNormLayer({groups: 4}));
    const xs = tf.tensor(randomData(16 * 72, 51, 1, 2), [16, 6, 6, 2]);
    const ys = tf.tensor(randomData(32, 53), [16, 2]);
    const history = await model.fit(xs, ys, {epochs: 8, batchSize: 4, verbose: 0});
    const loss = history.history.loss as number[];
    expect(loss[loss.length - 1]).toBeLessThan(loss[0]);
    const gamma = (model.layers[1] as GroupNormLayer).gamma!.read().dataSync();
    expect(Array.from(gamma).some((v) => v !== 1)).toBe(true);
  });

  it('save and load round trip is bit-exact (weights, config and predictions)', async () => {
    const model = convModel(new GroupNormLayer({groups: 2, epsilon: 1e-4, name: 'gn'}));
    const xs = tf.tensor(randomData(8 * 72, 55, 1, 2), [8, 6, 6, 2]);
    await model.fit(xs, tf.tensor(randomData(16, 57), [8, 2]), {epochs: 2, batchSize: 4, verbose: 0});
    const {loaded, artifacts} = await roundTrip(model);
    expect(artifacts.weightSpecs!.map((s) => s.name)).toEqual(expect.arrayContaining(['gn/gamma', 'gn/beta']));
    const gn = loaded.layers[1];
    expect(gn).toBeInstanceOf(GroupNormLayer);
    expect(gn.getConfig()).toEqual(model.layers[1].getConfig());
    expectIdenticalWeights(model, loaded);
    expect(bits(loaded.predict(xs) as tf.Tensor).equals(bits(model.predict(xs) as tf.Tensor))).toBe(true);
  });

  it('TensorFlow Addons class names load, with Addons semantics', async () => {
    const shape = [2, 3, 3, 6];
    const xData = randomData(size(shape), 61, 2, 3);
    for (const [layer, groups] of [
      [new AddonsGroupNormalization(), 2],
      [new AddonsGroupNormalization({groups: 3}), 3],
      // Addons writes the resolved channel count as groups; InstanceNormalization overrides it anyway.
      [new AddonsInstanceNormalization({groups: 3} as never), 6],
    ] as const) {
      const model = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: shape.slice(1)}), layer]});
      const {loaded, artifacts} = await roundTrip(model);
      const topology = JSON.stringify(artifacts.modelTopology);
      expect(topology).toContain(`"class_name":"${(layer.constructor as typeof GroupNormLayer).className}"`);
      expect(loaded.layers[loaded.layers.length - 1].constructor).toBe(layer.constructor);
      const y = loaded.predict(tf.tensor(xData, shape)) as tf.Tensor;
      expect(maxRelError(y.dataSync(), groupNormRef(ref(shape, xData), 3, groups, 1e-3).y.data)).toBeLessThan(1e-5);
    }
  });

  it('tf.memory().numTensors stays flat over 200 training steps', () => {
    const layer = built([4, 3, 3, 8], {groups: 4});
    const x = tf.tensor(randomData(288, 63), [4, 3, 3, 8]);
    const vars = [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val);
    const step = () => tf.tidy(() => {
      tf.variableGrads(() => tf.sum(tf.square(layer.apply(x, {training: true}) as tf.Tensor)) as tf.Scalar, vars);
    });
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 200; i++) step();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('GroupNormLayer config and errors', () => {
  it('getConfig holds every field and fromConfig rebuilds an identical layer', () => {
    const layer = new GroupNormLayer({
      groups: -1, axis: 1, epsilon: 1e-5, center: false, gammaInitializer: 'randomNormal',
      gammaRegularizer: 'l1l2', gammaConstraint: 'nonNeg', name: 'gn_cfg',
    });
    const config = layer.getConfig();
    expect(config).toMatchObject({
      groups: -1, axis: 1, epsilon: 1e-5, center: false, scale: true, name: 'gn_cfg',
      betaInitializer: {className: 'Zeros', config: {}}, gammaRegularizer: {className: 'L1L2'},
      gammaConstraint: {className: 'NonNeg'}, betaConstraint: null,
    });
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap['GroupNormalization'];
    const copy = fromConfig(cls, JSON.parse(JSON.stringify(config))) as GroupNormLayer;
    expect(copy).toBeInstanceOf(GroupNormLayer);
    expect(copy.getConfig()).toEqual(config);
  });

  const badGroups: Array<[unknown, RegExp]> = [
    [0, /GroupNormalization '.*': invalid groups 0; expected a positive integer that divides the number of channels, or -1/],
    [-2, /invalid groups -2/],
    [1.5, /invalid groups 1\.5/],
    ['4', /invalid groups "4"/],
    [NaN, /invalid groups NaN/],
  ];
  for (const [groups, message] of badGroups) {
    it(`rejects groups ${JSON.stringify(groups) ?? String(groups)} at construction`, () => {
      expect(() => new GroupNormLayer({groups: groups as number})).toThrow(message);
    });
  }

  it('rejects channels that are not a multiple of groups, and more groups than channels, at build', () => {
    expect(() => new GroupNormLayer({groups: 4, name: 'gn_a'}).apply(tf.zeros([2, 6])))
        .toThrow("GroupNormalization 'gn_a': the number of channels (6) must be a multiple of the number of groups (4).");
    expect(() => new GroupNormLayer({groups: 8, name: 'gn_b'}).apply(tf.zeros([2, 6])))
        .toThrow("GroupNormalization 'gn_b': number of groups (8) cannot be more than the number of channels (6).");
    // The default 32 groups need at least 32 channels.
    expect(() => groupNorm().apply(tf.zeros([2, 16]))).toThrow(/number of groups \(32\) cannot be more than .* \(16\)/);
    expect(() => new GroupNormLayer({groups: 3, axis: 1, name: 'gn_c'}).apply(tf.zeros([2, 4, 6])))
        .toThrow(/'gn_c': the number of channels \(4\) must be a multiple of the number of groups \(3\)/);
  });

  it('rejects unknown fields, a bad axis and instanceNorm with groups', () => {
    expect(() => new GroupNormLayer({group: 2} as never)).toThrow(/GroupNormalization: unknown config field 'group'/);
    expect(() => new GroupNormLayer({axis: 0, groups: 1}).apply(tf.zeros([2, 3]))).toThrow(/not the batch axis 0/);
    expect(() => instanceNorm({groups: 2} as never)).toThrow(/instanceNorm: groups is always -1/);
  });
});
