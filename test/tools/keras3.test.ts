import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as fs from 'fs';
import * as path from 'path';
import {
  BatchNormLayer, fileSystem, fromKeras, kerasArtifacts, loadKerasModel, NormalizationConfigError, registerKerasAliases,
  unregisterKerasAliases,
} from '../../src/io';
import {maxRelError, normalizeRef, randomData, Ref} from '../helpers/reference';
import {convRef, denseRef, readFixtureWeights} from './helpers';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'keras3');
const EPS = 0.001;
const load = (name: string) => tfl.loadLayersModel(fromKeras(fileSystem(path.join(FIXTURES, name))));
const modelJson = (name: string) => JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'model.json'), 'utf8'));

const relu6 = (x: Ref): Ref => ({shape: x.shape, data: x.data.map((v) => Math.min(Math.max(v, 0), 6))});

function bnRef(x: Ref, w: Record<string, number[]>, prefix: string): Ref {
  const get = (n: string) => w[`${prefix}/${n}`];
  return normalizeRef(x, x.shape.length - 1, get('moving_mean'), get('moving_variance'), EPS, get('gamma'), get('beta'));
}

function globalAveragePoolRef(x: Ref): Ref {
  const [n, h, w, c] = x.shape;
  const data = new Float64Array(n * c);
  for (let i = 0; i < x.data.length; i++) data[Math.floor(i / (h * w * c)) * c + (i % c)] += x.data[i] / (h * w);
  return {shape: [n, c], data};
}

function input(shape: number[], seed: number): {x: tf.Tensor; ref: Ref} {
  const values = randomData(shape.reduce((a, b) => a * b, 1), seed, 0.5, 2);
  return {x: tf.tensor(values, shape), ref: {shape, data: Float64Array.from(values)}};
}

function expectClose(y: tf.Tensor, expected: Ref): void {
  expect(y.shape).toEqual(expected.shape);
  expect(maxRelError(y.dataSync(), expected.data)).toBeLessThan(1e-5);
}

describe('Keras 3 layers-model files through fromKeras', () => {
  it.each([false, true])('Sequential([Functional base (Conv2D, BN, ReLU, nested Sequential with DepthwiseConv2D), ' +
      'GAP, Dense]) predicts within 1e-5 of a float64 reference (registerKerasAliases: %s)', async (aliases) => {
    const before = tf.memory().numTensors;
    if (aliases) registerKerasAliases();
    const model = await load('mobilenet_sequential').finally(() => unregisterKerasAliases());
    const base = model.getLayer('mobilenet_like_base') as tfl.LayersModel;
    expect(base.getLayer('conv1_bn') instanceof BatchNormLayer).toBe(aliases);
    const w = readFixtureWeights(path.join(FIXTURES, 'mobilenet_sequential'));
    const {x, ref} = input([2, 6, 6, 3], 1);
    let z = relu6(bnRef(convRef(ref, w['conv1/kernel'], 3, 3, 4, 'valid'), w, 'conv1_bn'));
    z = relu6(bnRef(convRef(z, w['block/dw/kernel'], 3, 3, 4, 'same', true), w, 'block/dw_bn'));
    z = relu6(bnRef(convRef(z, w['pw/kernel'], 1, 1, 5, 'valid'), w, 'pw_bn'));
    const expected = denseRef(globalAveragePoolRef(z), w['sequential/predictions/kernel'],
        w['sequential/predictions/bias']);
    const y = model.predict(x) as tf.Tensor;
    expectClose(y, expected);
    // Every stored weight went to the variable of its Keras 3 path.
    const block = base.getLayer('block') as tfl.LayersModel;
    expect(Array.from(block.getLayer('dw').getWeights()[0].dataSync())).toEqual(w['block/dw/kernel']);
    tf.dispose([x, y]);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('Functional: two inputs and outputs, a shared layer, a nested Sequential, Keras 3 regularizers, ' +
      'constraints and a mixed_float16 policy', async () => {
    const model = await load('functional_shared');
    const w = readFixtureWeights(path.join(FIXTURES, 'functional_shared'));
    const a = input([3, 4], 2);
    const b = input([3, 3], 3);
    const sharedA = denseRef(denseRef(a.ref, w['dense_a/kernel'], w['dense_a/bias']), w['shared/kernel'], w['shared/bias']);
    const sharedB = denseRef(b.ref, w['shared/kernel'], w['shared/bias']);
    const sum: Ref = {shape: [3, 2], data: sharedA.data.map((v, i) => v + sharedB.data[i])};
    const [y1, y2] = model.predict([a.x, b.x]) as tf.Tensor[];
    expectClose(y1, bnRef(sum, w, 'bn'));
    expectClose(y2, denseRef(sum, w['head/head_dense/kernel'], w['head/head_dense/bias']));

    const dense = model.getLayer('dense_a').getConfig();
    expect(dense.kernelRegularizer).toEqual({className: 'L1L2', config: {l1: 0, l2: 0.01}});
    const shared = model.getLayer('shared').getConfig();
    expect(shared.kernelRegularizer).toEqual({className: 'L1L2', config: {l1: 0.001, l2: 0}});
    expect(shared.kernelConstraint).toEqual({className: 'MaxNorm', config: {maxValue: 3, axis: 0}});
    expect(model.getLayer('shared').getWeights().map((v) => v.dtype)).toEqual(['float32', 'float32']);
    expect(model.getLayer('bn').getConfig().gammaRegularizer).toEqual({className: 'L1L2', config: {l1: 0, l2: 0.001}});
  });

  it('loadKerasModel takes a handler, and names the Node entry for file:// when no router handles it', async () => {
    const model = await loadKerasModel(fileSystem(path.join(FIXTURES, 'mobilenet_sequential')));
    expect(model.layers.map((l) => l.name)).toEqual(['mobilenet_like_base', 'gap', 'predictions']);
    await expect(loadKerasModel('nothing://model.json')).rejects.toThrow(/no IOHandler loads "nothing:\/\/model.json"/);
  });
});

describe('kerasArtifacts (the pure transform)', () => {
  const artifactsOf = (json: Record<string, unknown>): tf.io.ModelArtifacts => ({
    modelTopology: json.modelTopology as {},
    weightSpecs: (json.weightsManifest as Array<{weights: tf.io.WeightsManifestEntry[]}>)[0].weights,
  });

  it('does not modify its input, and passes non-Keras-3 artifacts through', () => {
    const json = modelJson('functional_shared');
    const copy = JSON.parse(JSON.stringify(json));
    const out = kerasArtifacts(artifactsOf(json));
    expect(json).toEqual(copy);
    expect(out.modelTopology).not.toEqual(json.modelTopology);
    const tfKeras2 = {modelTopology: {keras_version: '2.15.0', model_config: {}}, weightSpecs: []};
    expect(kerasArtifacts(tfKeras2)).toBe(tfKeras2);
  });

  it('writes tf.keras 2.x node lists, nested input/output lists, and node index + 1 for a nested Sequential', () => {
    const out = kerasArtifacts(artifactsOf(modelJson('functional_shared')));
    const config = (out.modelTopology as {model_config: {config: Record<string, unknown>}}).model_config.config;
    const layers = config.layers as Array<{name: string; inbound_nodes: unknown[]}>;
    expect(layers.find((l) => l.name === 'add')!.inbound_nodes).toEqual([[['shared', 0, 0, {}], ['shared', 1, 0, {}]]]);
    expect(layers.find((l) => l.name === 'shared')!.inbound_nodes).toEqual([[['dense_a', 0, 0, {}]], [['input_b', 0, 0, {}]]]);
    expect(config.output_layers).toEqual([['bn', 0, 0], ['head', 1, 0]]);
    // The mixed_float16 policy keeps float32 variables; tfjs computes in float32.
    expect((layers.find((l) => l.name === 'shared') as unknown as {config: {dtype: unknown}}).config.dtype)
        .toBe('float32');
    const flat = kerasArtifacts(artifactsOf(modelJson('mobilenet_sequential')));
    const base = (flat.modelTopology as {model_config: {config: {layers: Array<{config: Record<string, unknown>}>}}})
        .model_config.config.layers[0].config;
    expect(base.input_layers).toEqual([['input_layer', 0, 0]]);
    const pw = (base.layers as Array<{name: string; inbound_nodes: unknown[]}>).find((l) => l.name === 'pw')!;
    expect(pw.inbound_nodes).toEqual([[['block', 1, 0, {}]]]);
    expect(flat.weightSpecs!.map((s) => s.name)).toContain('dw/depthwise_kernel');
    expect(flat.weightSpecs!.map((s) => s.name)).toContain('predictions/kernel');
  });

  function withLayer(edit: (layers: Array<Record<string, any>>) => void): tf.io.ModelArtifacts {
    const json = modelJson('functional_shared');
    edit(json.modelTopology.model_config.config.layers);
    return artifactsOf(json);
  }

  it('rewrites the layer inside a wrapper (TimeDistributed) as any other layer', () => {
    const policy = {module: 'keras', class_name: 'DTypePolicy', config: {name: 'mixed_float16'}, registered_name: null};
    const wrapped = withLayer((layers) => {
      layers[2].class_name = 'TimeDistributed';
      layers[2].config = {name: 'dense_a', dtype: policy, layer: {module: 'keras.layers', class_name: 'Dense',
        config: {name: 'inner', units: 3, dtype: policy,
          kernel_regularizer: {module: 'keras.regularizers', class_name: 'L2', config: {l2: 0.5}}},
        registered_name: null}};
    });
    const out = kerasArtifacts(wrapped);
    const layer = (out.modelTopology as {model_config: {config: {layers: Array<{config: Record<string, any>}>}}})
        .model_config.config.layers[2].config;
    expect(layer.dtype).toBe('float32');
    expect(layer.layer).toEqual({class_name: 'Dense', config: {name: 'inner', units: 3, dtype: 'float32',
      kernel_regularizer: {class_name: 'L1L2', config: {l1: 0, l2: 0.5}}}});
  });

  it('fails naming the layer, key and why for what tfjs cannot honour', () => {
    const orthogonal = withLayer((layers) => {
      layers[2].config.kernel_regularizer =
          {module: 'keras.regularizers', class_name: 'OrthogonalRegularizer', config: {factor: 0.01, mode: 'rows'}};
    });
    expect(() => kerasArtifacts(orthogonal)).toThrow(NormalizationConfigError);
    expect(() => kerasArtifacts(orthogonal)).toThrow(
        /Dense 'dense_a': invalid kernel_regularizer .*; tfjs has no OrthogonalRegularizer/);
    const float16 = withLayer((layers) => {
      layers[3].config.dtype = {module: 'keras', class_name: 'DTypePolicy', config: {name: 'float16'}};
    });
    expect(() => kerasArtifacts(float16)).toThrow(/Dense 'shared': invalid dtype .*float16.*no tfjs equivalent/);
    const twoArgs = withLayer((layers) => {
      layers[4].inbound_nodes[0].args = layers[4].inbound_nodes[0].args[0];
    });
    expect(() => kerasArtifacts(twoArgs)).toThrow(/Add 'add': invalid inbound_nodes\[0\].args .*one tensor or one list/);
    const tensorKwarg = withLayer((layers) => {
      layers[5].inbound_nodes[0].kwargs = {mask: layers[5].inbound_nodes[0].args[0]};
    });
    expect(() => kerasArtifacts(tensorKwarg)).toThrow(/BatchNormalization 'bn': invalid inbound_nodes\[0\].kwargs.mask/);
  });
});
