import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as path from 'path';
import {checked, fileSystem, KerasContribInstanceNormalization, NormalizationConfigError} from '../../src/io';
import {maxRelError, randomData, ref, Ref} from '../helpers/reference';
import {expectIdenticalWeights, roundTrip} from '../helpers/round_trip';
import {centralDifferences, weightedSum} from '../helpers/variant_reference';
import {convRef, readFixtureWeights} from '../tools/helpers';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'keras_contrib', 'instance_norm');

/**
 * keras-contrib's formula in float64: per sample, mean and biased standard deviation over every axis but 0 and
 * `axis` (null: all but 0); y = gamma·(x − mean)/(std + eps) + beta, gamma/beta per `axis` channel (one value for null).
 */
function contribInstanceNormRef(x: Ref, axis: number | null, eps: number, gamma?: number[], beta?: number[]): Ref {
  const rank = x.shape.length;
  const channelAxis = axis == null ? null : (axis + rank) % rank;
  const groups = new Map<string, number[]>();
  const strides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.data.length; i++) {
    const index = x.shape.map((size, d) => Math.floor(i / strides[d]) % size);
    const key = `${index[0]}:${channelAxis == null ? 0 : index[channelAxis]}`;
    groups.set(key, [...(groups.get(key) ?? []), i]);
  }
  const data = new Float64Array(x.data.length);
  for (const [key, members] of groups) {
    const channel = Number(key.split(':')[1]);
    const mean = members.reduce((s, i) => s + x.data[i], 0) / members.length;
    const std = Math.sqrt(members.reduce((s, i) => s + (x.data[i] - mean) ** 2, 0) / members.length);
    for (const i of members) {
      data[i] = (gamma?.[channel] ?? 1) * (x.data[i] - mean) / (std + eps) + (beta?.[channel] ?? 0);
    }
  }
  return {shape: x.shape, data};
}

function built(shape: number[], args: ConstructorParameters<typeof KerasContribInstanceNormalization>[0]) {
  const layer = new KerasContribInstanceNormalization(args);
  layer.build(shape);
  return layer;
}

describe('keras-contrib InstanceNormalization', () => {
  for (const [shape, axis] of [[[2, 3, 4, 5], -1], [[2, 3, 4, 5], 1], [[3, 4, 6], null], [[3, 7], null]] as const) {
    it(`matches the float64 reference (ε on the standard deviation) for shape [${shape}] axis ${axis}`, () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const xData = Array.from(randomData(n, 7, 0.5, 1.5));
      const channels = axis == null ? 1 : shape[(axis + shape.length) % shape.length];
      const gamma = Array.from(randomData(channels, 9, 1, 0.3));
      const beta = Array.from(randomData(channels, 11));
      const layer = built([...shape], {axis, epsilon: 0.01});
      layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta)]);
      const expected = contribInstanceNormRef(ref([...shape], xData), axis, 0.01, gamma, beta);
      const x = tf.tensor(xData, [...shape]);
      const before = tf.memory().numTensors;
      const y = layer.apply(x) as tf.Tensor;
      expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-5);
      tf.dispose(y);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(x);
    });
  }

  it('differs from ε on the variance (the TF Addons formula): the placement is tested, not incidental', () => {
    const shape = [2, 2, 2, 3];
    const xData = Array.from(randomData(24, 3, 0, 0.05));
    const layer = built(shape, {axis: -1, epsilon: 1e-3, center: false, scale: false});
    const y = layer.apply(tf.tensor(xData, shape)) as tf.Tensor;
    const onStd = contribInstanceNormRef(ref(shape, xData), -1, 1e-3);
    expect(maxRelError(y.dataSync(), onStd.data)).toBeLessThan(1e-5);
    const x = ref(shape, xData);
    const mean = (c: number, s: number) => [0, 1, 2, 3].reduce((a, p) => a + x.data[(s * 4 + p) * 3 + c], 0) / 4;
    const variance = (c: number, s: number) =>
      [0, 1, 2, 3].reduce((a, p) => a + (x.data[(s * 4 + p) * 3 + c] - mean(c, s)) ** 2, 0) / 4;
    const onVariance = xData.map((v, i) => {
      const c = i % 3;
      const s = Math.floor(i / 12);
      return (v - mean(c, s)) / Math.sqrt(variance(c, s) + 1e-3);
    });
    expect(maxRelError(y.dataSync(), onVariance)).toBeGreaterThan(1e-2);
  });

  it('gradients (x, gamma, beta) match central finite differences of the float64 reference', () => {
    const shape = [2, 3, 2, 4];
    const n = 48;
    const xData = Array.from(randomData(n, 21, 0.5, 1.5));
    const w = Array.from(randomData(n, 23));
    const gamma = Array.from(randomData(4, 25, 1, 0.3));
    const beta = Array.from(randomData(4, 27));
    const loss = (xs: number[], g: number[], b: number[]) =>
      weightedSum(contribInstanceNormRef(ref(shape, xs), -1, 1e-3, g, b).data, w);
    const layer = built(shape, {axis: -1});
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

  it('refuses an integer axis on rank-2 input and axis 0, naming layer, field and value', () => {
    expect(() => built([4, 3], {axis: -1, name: 'in2'})).toThrow(NormalizationConfigError);
    expect(() => built([4, 3], {axis: -1, name: 'in2'})).toThrow(
        /InstanceNormalization 'in2': invalid axis -1; for input shape \[4, 3\].*use axis null/);
    expect(() => built([4, 3, 2], {axis: 0, name: 'in0'})).toThrow(/InstanceNormalization 'in0': invalid axis 0/);
  });

  it('saves and loads (axis null and integer) with identical weights and outputs', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.conv2d({filters: 3, kernelSize: 2, inputShape: [4, 4, 2]}));
    model.add(new KerasContribInstanceNormalization({axis: -1}));
    model.add(new KerasContribInstanceNormalization({center: false}));
    const {loaded, artifacts} = await roundTrip(model);
    expect(JSON.stringify(artifacts.modelTopology)).toContain('"axis":null');
    expect(loaded.layers[2]).toBeInstanceOf(KerasContribInstanceNormalization);
    expect((loaded.layers[2] as KerasContribInstanceNormalization).layerWide).toBe(true);
    expectIdenticalWeights(model, loaded);
    const x = tf.tensor(randomData(64, 5), [2, 4, 4, 2]);
    expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual((model.predict(x) as tf.Tensor).dataSync());
  });

  it('a converted keras-contrib model (axis -1 and axis null) loads, validated, and predicts as keras-contrib', async () => {
    const model = await tfl.loadLayersModel(checked(fileSystem(FIXTURE)));
    const w = readFixtureWeights(FIXTURE);
    const xData = randomData(2 * 5 * 5 * 2, 13, 0.5, 2);
    const z = convRef(ref([2, 5, 5, 2], xData), w['conv2d_1/kernel'], 2, 2, 3, 'valid', false, w['conv2d_1/bias']);
    const first = contribInstanceNormRef(z, -1, 1e-3, w['instance_normalization_1/gamma'],
        w['instance_normalization_1/beta']);
    const expected = contribInstanceNormRef(first, null, 1e-3, w['instance_normalization_2/gamma'],
        w['instance_normalization_2/beta']);
    const y = model.predict(tf.tensor(xData, [2, 5, 5, 2])) as tf.Tensor;
    expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-5);
  });
});
