import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, batchNorm} from '../../src';
import {channelMoments, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';

const CASES: Array<{shape: number[]; axis: number}> = [
  {shape: [6, 5], axis: -1},
  {shape: [4, 3, 5], axis: -1},
  {shape: [3, 4, 5, 6], axis: -1},
  {shape: [3, 6, 4, 5], axis: 1},
  {shape: [2, 3, 4, 2, 5], axis: -1},
  {shape: [2, 4, 3, 2, 3], axis: 1},
  {shape: [4, 3, 5], axis: -2},
];

function layerFor(shape: number[], axis: number, extra: Record<string, unknown> = {}): BatchNormLayer {
  const layer = new BatchNormLayer({axis, ...extra});
  layer.apply(tf.zeros(shape));
  return layer;
}

function resolvedAxis(shape: number[], axis: number): number {
  return axis < 0 ? axis + shape.length : axis;
}

describe('BatchNormLayer forward against a float64 reference', () => {
  for (const {shape, axis} of CASES) {
    it(`training and moving-statistics update, shape [${shape}] axis ${axis}`, () => {
      const a = resolvedAxis(shape, axis);
      const c = shape[a];
      const xData = randomData(shape.reduce((p, q) => p * q), 7 + shape.length, 3, 2);
      const gamma = Array.from(randomData(c, 11, 1, 0.3));
      const beta = Array.from(randomData(c, 13, 0, 0.5));
      const layer = layerFor(shape, axis, {momentum: 0.9, epsilon: 1e-3});
      layer.gamma!.write(tf.tensor1d(gamma));
      layer.beta!.write(tf.tensor1d(beta));
      const x = tf.tensor(xData, shape);
      const y = layer.apply(x, {training: true}) as tf.Tensor;

      const m = channelMoments(ref(shape, xData), a);
      const expected = normalizeRef(ref(shape, xData), a, m.mean, m.variance, 1e-3, gamma, beta);
      expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-5);
      const mm = m.mean.map((v) => 0.9 * 0 + 0.1 * v);
      const mv = m.variance.map((v) => 0.9 * 1 + 0.1 * v);
      expect(maxRelError(layer.movingMean.read().dataSync(), mm)).toBeLessThan(1e-5);
      expect(maxRelError(layer.movingVariance.read().dataSync(), mv)).toBeLessThan(1e-5);

      // Inference uses the moving statistics.
      const yi = layer.apply(x) as tf.Tensor;
      const expectedInf = normalizeRef(ref(shape, xData), a, mm, mv, 1e-3, gamma, beta);
      expect(maxRelError(yi.dataSync(), expectedInf.data)).toBeLessThan(1e-5);
    });
  }

  it('unbiasedVariance stores m/(m-1)·σ²_B in the moving variance', () => {
    const shape = [4, 3, 3, 2];
    const xData = randomData(72, 5, 1, 3);
    const layer = layerFor(shape, -1, {momentum: 0.5, unbiasedVariance: true});
    layer.apply(tf.tensor(xData, shape), {training: true});
    const m = channelMoments(ref(shape, xData), 3);
    const expected = m.variance.map((v) => 0.5 * 1 + 0.5 * v * 36 / 35);
    expect(maxRelError(layer.movingVariance.read().dataSync(), expected)).toBeLessThan(1e-6);
  });

  it('momentum 1 keeps the statistics, momentum 0 replaces them', () => {
    const xData = randomData(20, 3, 2, 1);
    const keep = layerFor([5, 4], -1, {momentum: 1});
    keep.apply(tf.tensor(xData, [5, 4]), {training: true});
    expect(Array.from(keep.movingMean.read().dataSync())).toEqual([0, 0, 0, 0]);
    const replace = layerFor([5, 4], -1, {momentum: 0});
    replace.apply(tf.tensor(xData, [5, 4]), {training: true});
    const m = channelMoments(ref([5, 4], xData), 1);
    expect(maxRelError(replace.movingMean.read().dataSync(), m.mean)).toBeLessThan(1e-6);
  });
});

describe('BatchNormLayer gradients against finite differences of the float64 reference', () => {
  for (const {shape, axis} of [CASES[0], CASES[3], CASES[6]]) {
    it(`dx, dgamma, dbeta for shape [${shape}] axis ${axis}`, () => {
      const a = resolvedAxis(shape, axis);
      const c = shape[a];
      const n = shape.reduce((p, q) => p * q);
      const xData = Array.from(randomData(n, 21, 0.5, 1.5));
      const w = Array.from(randomData(n, 23));
      const gamma = Array.from(randomData(c, 25, 1, 0.3));
      const beta = Array.from(randomData(c, 27));
      const eps = 1e-3;
      // Loss L = Σ w·y(x, γ, β) in float64.
      const loss = (xs: number[], g: number[], b: number[]) => {
        const m = channelMoments(ref(shape, xs), a);
        const y = normalizeRef(ref(shape, xs), a, m.mean, m.variance, eps, g, b).data;
        return y.reduce((s, v, i) => s + v * w[i], 0);
      };
      const fd = (f: (v: number[]) => number, v: number[]) => v.map((_, i) => {
        const h = 1e-5 * Math.max(1, Math.abs(v[i]));
        const up = [...v]; up[i] += h;
        const dn = [...v]; dn[i] -= h;
        return (f(up) - f(dn)) / (2 * h);
      });
      const layer = layerFor(shape, axis, {epsilon: eps});
      layer.gamma!.write(tf.tensor1d(gamma));
      layer.beta!.write(tf.tensor1d(beta));
      const wT = tf.tensor(w, shape);
      const {grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(tf.tensor(xData, shape), {training: true}) as tf.Tensor, wT)) as tf.Scalar,
          [layer.gamma!, layer.beta!].map((v) => (v as unknown as {val: tf.Variable}).val));
      const dx = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(layer.apply(x, {training: true}) as tf.Tensor, wT)))(tf.tensor(xData, shape));
      const gradOf = (v: tfl.LayerVariable) => grads[(v as unknown as {val: tf.Variable}).val.name].dataSync();
      expect(maxRelError(dx.dataSync(), fd((v) => loss(v, gamma, beta), xData))).toBeLessThan(2e-3);
      expect(maxRelError(gradOf(layer.gamma!), fd((v) => loss(xData, v, beta), gamma))).toBeLessThan(2e-3);
      expect(maxRelError(gradOf(layer.beta!), fd((v) => loss(xData, gamma, v), beta))).toBeLessThan(2e-3);
    });
  }
});

describe('BatchNormLayer parity with tf.layers.batchNormalization', () => {
  it('same numbers in training and inference with the same weights (<= 1e-5 relative)', () => {
    const shape = [8, 4, 4, 6];
    const xData = randomData(8 * 4 * 4 * 6, 31, 2, 3);
    const ours = layerFor(shape, -1, {momentum: 0.95, epsilon: 1e-3});
    const builtin = tfl.layers.batchNormalization({axis: -1, momentum: 0.95, epsilon: 1e-3});
    builtin.apply(tf.zeros(shape));
    const weights = [randomData(6, 1, 1, 0.2), randomData(6, 2), randomData(6, 3), randomData(6, 4, 2, 0.5)]
        .map((d) => tf.tensor1d(d));
    ours.setWeights(weights);
    builtin.setWeights(weights);
    const x = tf.tensor(xData, shape);
    expect(maxRelError((ours.apply(x) as tf.Tensor).dataSync(), (builtin.apply(x) as tf.Tensor).dataSync())).toBeLessThan(1e-5);
    const yOurs = (ours.apply(x, {training: true}) as tf.Tensor).dataSync();
    const yBuiltin = (builtin.apply(x, {training: true}) as tf.Tensor).dataSync();
    expect(maxRelError(yOurs, yBuiltin)).toBeLessThan(1e-5);
    const [, , mmO, mvO] = ours.getWeights().map((t) => t.dataSync());
    const [, , mmB, mvB] = builtin.getWeights().map((t) => t.dataSync());
    expect(maxRelError(mmO, mmB)).toBeLessThan(1e-5);
    expect(maxRelError(mvO, mvB)).toBeLessThan(1e-5);
  });
});

describe('BatchNormLayer fixes over the built-in layer', () => {
  it('trainable: false uses and freezes the moving statistics during fit', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({units: 4, inputShape: [3]}));
    const bn = new BatchNormLayer({trainable: false});
    model.add(bn);
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    const before = bn.getWeights().map((t) => Array.from(t.dataSync()));
    const xs = tf.tensor(randomData(48, 9, 5, 2), [16, 3]);
    await model.fit(xs, tf.zeros([16, 4]), {epochs: 2, batchSize: 8, verbose: 0});
    expect(bn.getWeights().map((t) => Array.from(t.dataSync()))).toEqual(before);
    // In a training call it computes what inference computes.
    const h = tf.tensor(randomData(20, 3, 4), [5, 4]);
    expect(Array.from((bn.apply(h, {training: true}) as tf.Tensor).dataSync()))
        .toEqual(Array.from((bn.apply(h) as tf.Tensor).dataSync()));
    // The built-in layer, by contrast, keeps updating its statistics (the trap we remove).
    const builtin = tfl.layers.batchNormalization({trainable: false});
    builtin.apply(tf.zeros([5, 4]));
    builtin.apply(h, {training: true});
    expect(Array.from(builtin.getWeights()[0].dataSync())).not.toEqual([0, 0, 0, 0]);
  });

  for (const [center, scale] of [[false, true], [true, false], [false, false]]) {
    it(`center: ${center}, scale: ${scale} trains with fit and matches the reference`, async () => {
      const model = tfl.sequential();
      model.add(tfl.layers.dense({units: 3, inputShape: [3], kernelInitializer: 'identity'}));
      const bn = new BatchNormLayer({center, scale});
      model.add(bn);
      model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
      const names = bn.weights.map((w) => w.originalName.split('/').pop());
      expect(names).toEqual([...(scale ? ['gamma'] : []), ...(center ? ['beta'] : []), 'moving_mean', 'moving_variance']);
      const h = await model.fit(tf.tensor(randomData(24, 17, 1, 2), [8, 3]), tf.ones([8, 3]),
          {epochs: 3, batchSize: 8, verbose: 0});
      expect(h.history.loss.every((l) => Number.isFinite(l as number))).toBe(true);
      const xData = randomData(24, 19, 1, 2);
      const m = channelMoments(ref([8, 3], xData), 1);
      const y = bn.apply(tf.tensor(xData, [8, 3]), {training: true}) as tf.Tensor;
      const w = bn.getWeights().map((t) => Array.from(t.dataSync()));
      const gamma = scale ? w[0] : undefined;
      const beta = center ? w[scale ? 1 : 0] : undefined;
      expect(maxRelError(y.dataSync(), normalizeRef(ref([8, 3], xData), 1, m.mean, m.variance, 1e-3, gamma, beta).data))
          .toBeLessThan(1e-5);
    });
  }

  it('with throwOnSingleValueBatch, a training batch with one value per channel is a clear error', () => {
    const layer = layerFor([1, 4], -1, {throwOnSingleValueBatch: true});
    expect(() => layer.apply(tf.ones([1, 4]), {training: true}))
        .toThrow(/BatchNormLayer '.*': a training batch of input shape \[1, 4\] holds one value per channel/);
    // Inference with batch 1 is fine, and batch 1 with spatial dims trains.
    expect((layer.apply(tf.ones([1, 4])) as tf.Tensor).shape).toEqual([1, 4]);
    const conv = layerFor([1, 2, 2, 3], -1);
    expect(() => conv.apply(tf.ones([1, 2, 2, 3]), {training: true})).not.toThrow();
  });
});

describe('BatchNormLayer config', () => {
  it('getConfig holds every field and fromConfig rebuilds an identical layer', () => {
    const layer = new BatchNormLayer({
      axis: 1, momentum: 0.9, epsilon: 1e-5, center: false, scale: true, unbiasedVariance: true,
      gammaInitializer: 'randomNormal', movingVarianceInitializer: {className: 'Constant', config: {value: 2}},
      gammaRegularizer: 'l1l2', gammaConstraint: 'nonNeg', name: 'bn_cfg',
    });
    const config = layer.getConfig();
    expect(config).toMatchObject({
      axis: 1, momentum: 0.9, epsilon: 1e-5, center: false, scale: true, unbiasedVariance: true, name: 'bn_cfg',
      trainable: true, betaInitializer: {className: 'Zeros', config: {}},
      movingMeanInitializer: {className: 'Zeros', config: {}},
      movingVarianceInitializer: {className: 'Constant', config: {value: 2}},
      gammaRegularizer: {className: 'L1L2'}, gammaConstraint: {className: 'NonNeg'},
      betaRegularizer: null, betaConstraint: null,
    });
    const rebuilt = tf.serialization.SerializationMap.getMap().classNameMap['BatchNormLayer'];
    const copy = rebuilt[1](rebuilt[0], JSON.parse(JSON.stringify(config))) as BatchNormLayer;
    expect(copy.getConfig()).toEqual(config);
  });

  it('the factory builds the layer', () => {
    expect(batchNorm({momentum: 0.5})).toBeInstanceOf(BatchNormLayer);
  });

  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{momentum: 1.5}, /BatchNormLayer '.*': invalid momentum 1\.5; expected a finite number >= 0 and <= 1/],
    [{momentum: -0.1}, /invalid momentum -0\.1/],
    [{momentum: NaN}, /invalid momentum NaN/],
    [{momentum: '0.9'}, /invalid momentum "0\.9"/],
    [{epsilon: 0}, /invalid epsilon 0; expected a finite number > 0/],
    [{epsilon: -1e-3}, /invalid epsilon -0\.001/],
    [{epsilon: Infinity}, /invalid epsilon Infinity/],
    [{axis: 1.5}, /invalid axis 1\.5; expected an integer/],
    [{axis: '1'}, /invalid axis "1"/],
    [{axis: [3]}, /invalid axis \[3\]/],
    [{center: 'yes'}, /invalid center "yes"; expected true or false/],
    [{unbiasedVariance: 1}, /invalid unbiasedVariance 1/],
    [{gammaInitializer: 'nope'}, /invalid gammaInitializer "nope"; expected the name of a registered initializer/],
    [{betaRegularizer: 'zeros'}, /invalid betaRegularizer "zeros"; 'Zeros' is registered but is not a regularizer/],
    [{gammaInitializer: 'nonNeg'}, /invalid gammaInitializer "nonNeg"; 'NonNeg' is registered but is not an initializer/],
    [{gammaConstraint: 42}, /invalid gammaConstraint 42/],
    [{renorm: true}, /BatchNormLayer: unknown config field 'renorm'/],
  ];
  for (const [config, message] of bad) {
    it(`rejects ${JSON.stringify(config) ?? String(config)}`, () => {
      expect(() => new BatchNormLayer(config as never)).toThrow(message);
    });
  }

  it('rejects an axis missing from the input and an undefined channel dimension at build time', () => {
    expect(() => new BatchNormLayer({axis: 4}).apply(tf.zeros([2, 3, 4])))
        .toThrow(/invalid axis 4; for input shape \[2, 3, 4\] \(rank 3\) the channel axis must be in \[-2, 2\]/);
    expect(() => new BatchNormLayer({axis: 0}).apply(tf.zeros([2, 3]))).toThrow(/not the batch axis 0/);
    expect(() => new BatchNormLayer({axis: -3}).apply(tf.zeros([2, 3]))).toThrow(/invalid axis -3/);
    const input = tfl.input({shape: [null as unknown as number, 3]});
    expect(() => new BatchNormLayer({axis: 1}).apply(input))
        .toThrow(/the channel axis 1 of input shape \[null, null, 3\] must have a defined size/);
    expect(() => new BatchNormLayer().apply(tf.zeros([3]))).toThrow(/rank >= 2/);
  });
});

describe('BatchNormLayer resources', () => {
  it('tf.memory().numTensors stays flat over 500 training steps', () => {
    const layer = layerFor([16, 8], -1);
    const x = tf.tensor(randomData(128, 3), [16, 8]);
    const step = () => tf.tidy(() => {
      const g = tf.grad((xi: tf.Tensor) => tf.sum(tf.square(layer.apply(xi, {training: true}) as tf.Tensor)));
      g(x);
    });
    for (let i = 0; i < 5; i++) step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 500; i++) step();
    expect(tf.memory().numTensors).toBe(before);
  });
});
