import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as fs from 'fs';
import * as path from 'path';
import {
  AddonsGroupNormalization, AddonsInstanceNormalization, BatchNormLayer, BatchRenormLayer, batchNormFromKerasConfig,
  fileSystem, fromKeras, GroupNormLayer, kerasGhostArtifacts, registerKerasAliases, unregisterKerasAliases,
} from '../../src/io';
import {maxRelError, normalizeRef, randomData, Ref} from '../helpers/reference';
import {centralDifferences, kerasGhostStep} from '../helpers/variant_reference';
import {convRef, denseRef, readFixtureWeights} from './helpers';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'keras');
const EPS = 0.001;

const fixtureWeights = (name: string) => readFixtureWeights(path.join(FIXTURES, name));

const load = (name: string) => tfl.loadLayersModel(fileSystem(path.join(FIXTURES, name)));

/** Keras GroupNormalization on the last axis: statistics per sample and group over all other axes. */
function groupNormRef(x: Ref, groups: number, gamma: number[], beta: number[], eps: number): Ref {
  const c = x.shape[x.shape.length - 1];
  const n = x.shape[0];
  const spatial = x.data.length / (n * c);
  const per = c / groups;
  const data = new Float64Array(x.data.length);
  for (let s = 0; s < n; s++) {
    for (let g = 0; g < groups; g++) {
      const idx: number[] = [];
      for (let p = 0; p < spatial; p++) for (let k = g * per; k < (g + 1) * per; k++) idx.push((s * spatial + p) * c + k);
      const mean = idx.reduce((a, i) => a + x.data[i], 0) / idx.length;
      const variance = idx.reduce((a, i) => a + (x.data[i] - mean) ** 2, 0) / idx.length;
      for (const i of idx) data[i] = gamma[i % c] * (x.data[i] - mean) / Math.sqrt(variance + eps) + beta[i % c];
    }
  }
  return {shape: x.shape, data};
}

function input(shape: number[], seed: number): {x: tf.Tensor; ref: Ref} {
  const values = randomData(shape.reduce((a, b) => a * b, 1), seed, 0.5, 2);
  return {x: tf.tensor(values, shape), ref: {shape, data: Float64Array.from(values)}};
}

function expectClose(model: tfl.LayersModel, x: tf.Tensor, expected: Ref): void {
  const y = model.predict(x) as tf.Tensor;
  expect(y.shape).toEqual(expected.shape);
  expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-5);
}

afterEach(() => unregisterKerasAliases());

describe('tf.keras 2.x BatchNormalization with registerKerasAliases()', () => {
  it('Dense → BatchNormalization(renorm=True) loads as BatchRenormLayer with all seven weights', async () => {
    registerKerasAliases();
    const model = await load('tf2_dense_renorm');
    const bn = model.getLayer('batch_normalization') as BatchRenormLayer;
    expect(bn).toBeInstanceOf(BatchRenormLayer);
    expect(bn.name).toBe('batch_normalization');
    expect(bn.renormClipping).toEqual({rmax: 3, rmin: 0.3333, dmax: 5});
    expect(bn.renormMomentum).toBe(0.99);
    const w = fixtureWeights('tf2_dense_renorm');
    const names = ['gamma', 'beta', 'moving_mean', 'moving_variance', 'moving_stddev', 'renorm_mean', 'renorm_stddev'];
    expect(bn.weights.map((v) => v.originalName)).toEqual(names.map((n) => `batch_normalization/${n}`));
    bn.weights.forEach((v) => expect(Array.from(v.read().dataSync())).toEqual(w[v.originalName]));

    const {x, ref} = input([6, 5], 1);
    const z = denseRef(ref, w['dense/kernel'], w['dense/bias']);
    const b = (n: string) => w[`batch_normalization/${n}`];
    expectClose(model, x, normalizeRef(z, 1, b('moving_mean'), b('moving_variance'), EPS, b('gamma'), b('beta')));
  });

  it('Conv2D → BatchNormalization(axis [3]) loads as BatchNormLayer on axis 3', async () => {
    registerKerasAliases();
    const model = await load('tf2_conv_bn');
    const bn = model.getLayer('batch_normalization') as BatchNormLayer;
    expect(bn.getClassName()).toBe('BatchNormLayer');
    expect(bn.axis).toBe(3);
    const w = fixtureWeights('tf2_conv_bn');
    const {x, ref} = input([2, 4, 4, 2], 2);
    const z = convRef(ref, w['conv2d/kernel'], 2, 2, 3, 'valid', false, w['conv2d/bias']);
    const b = (n: string) => w[`batch_normalization/${n}`];
    expectClose(model, x, normalizeRef(z, 3, b('moving_mean'), b('moving_variance'), EPS, b('gamma'), b('beta')));
  });

  it('a reloaded model saves as this package\'s classes and loads again without the aliases', async () => {
    registerKerasAliases();
    const model = await load('tf2_dense_renorm');
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    unregisterKerasAliases();
    expect(JSON.stringify(saved!.modelTopology)).toContain('"class_name":"BatchRenormLayer"');
    const again = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
    const {x} = input([3, 5], 3);
    expect((again.predict(x) as tf.Tensor).dataSync()).toEqual((model.predict(x) as tf.Tensor).dataSync());
  });

  it('BatchNormalization(virtual_batch_size=2), saved by a built layer (axis [4], weights [1, 1, 1, 1, 3]), ' +
      'loads, predicts and trains like Keras', async () => {
    registerKerasAliases();
    const model = await tfl.loadLayersModel(fromKeras(fileSystem(path.join(FIXTURES, 'tf2_virtual_batch'))));
    const bn = model.getLayer('batch_normalization') as BatchNormLayer;
    expect(bn.getClassName()).toBe('BatchNormLayer');
    // Keras's build shifted the channel axis 3 of the [B, 2, 2, 3] input past its ghost axis.
    expect(bn.axis).toBe(3);
    expect(bn.virtualBatchSize).toBe(2);
    const w = fixtureWeights('tf2_virtual_batch');
    const b = (n: string) => w[`batch_normalization/${n}`];
    bn.weights.forEach((v) => {
      expect(v.shape).toEqual([3]);
      expect(Array.from(v.read().dataSync())).toEqual(w[v.originalName]);
    });

    // Inference does not depend on v: a batch of 3 (no multiple of 2) uses the moving statistics.
    const {x, ref} = input([3, 2, 2, 3], 6);
    expectClose(model, x, normalizeRef(ref, 3, b('moving_mean'), b('moving_variance'), EPS, b('gamma'), b('beta')));

    // One SGD step on a batch of 4 (two ghost batches of 2), against the float64 tf.keras reference.
    const batch = input([4, 2, 2, 3], 7);
    const target = Array.from(randomData(48, 8));
    const lr = 0.1;
    const state = {gamma: b('gamma'), beta: b('beta'), movingMean: b('moving_mean'), movingVariance: b('moving_variance'),
      movingStddev: [], renormMean: [], renormStddev: []};
    const cfg = {axis: 3, eps: EPS, virtualBatchSize: 2, momentum: 0.9};
    // Keras's mean squared error over the batch, as a function of gamma and beta.
    const loss = (gamma: number[], beta: number[]) =>
      kerasGhostStep(batch.ref, {...state, gamma, beta}, cfg).y.data.reduce((a, y, i) => a + (y - target[i]) ** 2, 0) / 48;
    const step = kerasGhostStep(batch.ref, state, cfg);
    model.compile({optimizer: tf.train.sgd(lr), loss: 'meanSquaredError'});
    const lossValue = await model.trainOnBatch(batch.x, tf.tensor(target, [4, 2, 2, 3])) as number;
    expect(Math.abs(lossValue - loss(state.gamma, state.beta))).toBeLessThan(1e-5);
    const sgd = (v: number[], grad: number[]) => v.map((p, i) => p - lr * grad[i]);
    const expected: Record<string, number[]> = {
      gamma: sgd(state.gamma, centralDifferences((g) => loss(g, state.beta), state.gamma)),
      beta: sgd(state.beta, centralDifferences((be) => loss(state.gamma, be), state.beta)),
      moving_mean: step.next.movingMean,
      moving_variance: step.next.movingVariance,
    };
    for (const v of bn.weights) {
      expect(maxRelError(v.read().dataSync(), expected[v.originalName.split('/')[1]])).toBeLessThan(1e-5);
    }
  });

  it('a built ghost layer loaded without fromKeras fails before tfjs writes a weight, naming the way to load it', async () => {
    registerKerasAliases();
    const message = "BatchNormalization 'batch_normalization': invalid axis [4]; a built tf.keras layer with " +
        'virtual_batch_size saves its axis shifted past the ghost axis and its weights as [1, ..., C]; load the ' +
        'model through fromKeras(handler) or loadKerasModel(url)';
    const before = tf.memory().numTensors;
    await expect(load('tf2_virtual_batch')).rejects.toThrow(message);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => batchNormFromKerasConfig({name: 'bn', axis: [2], virtualBatchSize: 2})).toThrow(
        "BatchNormalization 'bn': invalid axis [2]; a built tf.keras layer with virtual_batch_size");
    // An int axis comes from a layer that was never built (or from kerasGhostArtifacts): it is not shifted.
    expect(batchNormFromKerasConfig({name: 'bn', axis: -1, virtualBatchSize: 2}).axis).toBe(-1);
  });

  it('kerasGhostArtifacts: the shifted axis and the [1, ..., C] weights of a ghost layer only, as a pure step', () => {
    const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tf2_virtual_batch', 'model.json'), 'utf8'));
    const artifacts: tf.io.ModelArtifacts = {modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights};
    const copy = JSON.parse(JSON.stringify(artifacts));
    const out = kerasGhostArtifacts(artifacts);
    expect(artifacts).toEqual(copy);
    const layers = (out.modelTopology as any).model_config.config.layers;
    const bnConfig = layers.find((l: any) => l.class_name === 'BatchNormalization').config;
    expect(bnConfig.axis).toBe(3);
    expect(json.weightsManifest[0].weights.map((w: any) => w.shape)).toEqual(Array(4).fill([1, 1, 1, 1, 3]));
    expect(out.weightSpecs!.map((w) => [w.name, w.shape])).toEqual(
        json.weightsManifest[0].weights.map((w: any) => [w.name, [3]]));
    // A file without ghost layers is returned as is.
    const plain = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tf2_conv_bn', 'model.json'), 'utf8'));
    const plainArtifacts = {modelTopology: plain.modelTopology, weightSpecs: plain.weightsManifest[0].weights};
    expect(kerasGhostArtifacts(plainArtifacts)).toBe(plainArtifacts);
  });

  it('without the aliases, tfjs fails on the renorm weights (the reason to opt in), the package\'s loaders say ' +
      'what to call, and unregister restores tfjs', async () => {
    await expect(load('tf2_dense_renorm')).rejects.toThrow("BatchNormalization 'batch_normalization' has renorm: " +
        "true, which tfjs's built-in BatchNormalization does not compute (and it has no moving_stddev, renorm_mean, " +
        'renorm_stddev); call registerKerasAliases() from tfjs-normalization before loading');
    const json = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tf2_dense_renorm', 'model.json'), 'utf8'));
    const weights = fs.readFileSync(path.join(FIXTURES, 'tf2_dense_renorm', json.weightsManifest[0].paths[0]));
    await expect(tfl.loadLayersModel(tf.io.fromMemory({
      modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights,
      weightData: new Uint8Array(weights).buffer,
    }))).rejects.toThrow(/Provided weight data has no target variable/);
    registerKerasAliases();
    unregisterKerasAliases();
    const registered = tf.serialization.SerializationMap.getMap().classNameMap['BatchNormalization'][0];
    expect(new (registered as unknown as new (a: object) => tfl.layers.Layer)({})).toBeInstanceOf(
        tfl.layers.batchNormalization({}).constructor);
  });
});

describe('Keras config translation', () => {
  const base = {name: 'bn', axis: [1], epsilon: 0.01};

  it('accepts fused, synchronized and null renorm_clipping; one-element axis lists', () => {
    const plain = batchNormFromKerasConfig({...base, fused: true, synchronized: true});
    expect(plain.getClassName()).toBe('BatchNormLayer');
    expect(plain.axis).toBe(1);
    const renorm = batchNormFromKerasConfig({...base, renorm: true, renormClipping: null, renormMomentum: 0.9});
    expect(renorm).toBeInstanceOf(BatchRenormLayer);
    expect((renorm as BatchRenormLayer).renormClipping).toEqual({});
    expect((renorm as BatchRenormLayer).renormMomentum).toBe(0.9);
    const policy = {module: 'keras', className: 'DTypePolicy', config: {name: 'float32'}, registeredName: null};
    expect(batchNormFromKerasConfig({...base, batchInputShape: [null, 4], dtype: policy}).dtype).toBe('float32');
  });

  it('refuses what it cannot honour', () => {
    expect(() => batchNormFromKerasConfig({...base, axis: [1, 2]})).toThrow(
        "BatchNormalization 'bn': invalid axis [1,2]; this package normalizes over one channel axis");
    expect(() => batchNormFromKerasConfig({...base, adjustment: 'lambda'})).toThrow(
        "BatchNormalization 'bn': invalid adjustment \"lambda\"; an adjustment function cannot be honoured");
    expect(() => batchNormFromKerasConfig({...base, fused: 'yes'})).toThrow(
        "BatchNormalization 'bn': invalid fused \"yes\"; expected true, false or null");
    expect(() => batchNormFromKerasConfig({...base, momentun: 0.9})).toThrow(/unknown config field 'momentun'/);
  });
});

describe('group normalization models', () => {
  it('Keras 3 GroupNormalization (batch_shape input, module/registered_name initializers) through fromKeras', async () => {
    // Importing the package changes no tfjs class: tfjs's own InputLayer refuses Keras 3's batch_shape.
    await expect(load('keras3_group_norm')).rejects.toThrow();
    const model = await tfl.loadLayersModel(fromKeras(fileSystem(path.join(FIXTURES, 'keras3_group_norm'))));
    const gn = model.getLayer('group_normalization') as GroupNormLayer;
    expect(gn).toBeInstanceOf(GroupNormLayer);
    expect(gn.groups).toBe(3);
    expect(model.inputs[0].shape).toEqual([null, 3, 3, 6]);
    const w = fixtureWeights('keras3_group_norm');
    const {x, ref} = input([2, 3, 3, 6], 4);
    expectClose(model, x, groupNormRef(ref, 3, w['group_normalization/gamma'], w['group_normalization/beta'], EPS));
  });

  it('TensorFlow Addons GroupNormalization and InstanceNormalization', async () => {
    const model = await load('addons_group_instance');
    expect(model.getLayer('group_normalization')).toBeInstanceOf(AddonsGroupNormalization);
    expect(model.getLayer('instance_normalization')).toBeInstanceOf(AddonsInstanceNormalization);
    const w = fixtureWeights('addons_group_instance');
    const {x, ref} = input([3, 2, 2, 4], 5);
    const g = groupNormRef(ref, 2, w['group_normalization/gamma'], w['group_normalization/beta'], EPS);
    expectClose(model, x, groupNormRef(g, 4, w['instance_normalization/gamma'], w['instance_normalization/beta'], EPS));
  });
});
