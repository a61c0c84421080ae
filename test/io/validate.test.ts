/**
 * validateModelArtifacts / checked(): a broken model file fails before tfjs
 * builds anything, so a failed load leaves no tensor behind, and valid models
 * load exactly as without the check.
 */
import * as fs from 'fs';
import * as nodePath from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  AddonsGroupNormalization, AddonsInstanceNormalization, BatchNormLayer, BatchRenormLayer, checked, fileSystem, fromKeras,
  GroupNormLayer, KerasContribInstanceNormalization, kerasGhostArtifacts, NormalizationLayer, registerKerasAliases, unregisterKerasAliases,
  validateModelArtifacts,
} from '../../src/io';
import {FilterResponseNorm} from '../../examples/extend';
import {
  artifactsOf, CHANNELS, clone, expectCleanPrototype, Files, KINDS, load, locate, specs, useBaseModels, weightCases,
} from '../helpers/model_files';
import {bits, expectIdenticalWeights} from '../helpers/round_trip';

const KERAS = nodePath.join(__dirname, '..', 'fixtures', 'keras');

const models = useBaseModels('validate-');

/** model.json and the single weights file of a saved model directory. */
function readDir(dir: string): Files {
  const modelJSON = JSON.parse(fs.readFileSync(nodePath.join(dir, 'model.json'), 'utf8'));
  const [group] = modelJSON.weightsManifest;
  return {modelJSON, weights: new Uint8Array(fs.readFileSync(nodePath.join(dir, group.paths[0])))};
}

/** Predictions of both models on the same input are bit-identical. */
function expectSamePredictions(a: tfl.LayersModel, b: tfl.LayersModel, shape: number[]): void {
  const x = tf.randomNormal(shape, 0, 2, 'float32', 7);
  const [ya, yb] = [a, b].map((m) => m.predict(x) as tf.Tensor);
  expect(bits(yb).equals(bits(ya))).toBe(true);
  tf.dispose([x, ya, yb]);
}

describe.each(KINDS)('%s: every broken weight fails before tfjs builds the model', (kind) => {
  for (const c of weightCases(kind)) {
    for (const source of ['checked', 'disk'] as const) {
      it(`${c.name} (${source})`, async () => {
        const f = clone(models.base[kind]);
        c.corrupt(f);
        const tensors = tf.memory().numTensors;
        const error = await load(source, f, models.scratch).then(() => null, (e: unknown) => e);
        expect(error).toBeInstanceOf(Error);
        expect((error as Error).message).toMatch(c.checked);
        if (source === 'disk') expect((error as Error).message).toMatch(/^fileSystem: .*model\.json: /);
        expect(tf.memory().numTensors).toBe(tensors);
        expectCleanPrototype();
      });
    }
  }
});

describe('valid models load through checked() and fileSystem exactly as without them', () => {
  it.each(KINDS)('%s', async (kind) => {
    const plain = await load('memory', clone(models.base[kind]), models.scratch);
    for (const source of ['checked', 'disk'] as const) {
      const model = await load(source, clone(models.base[kind]), models.scratch);
      expectIdenticalWeights(plain, model);
      expectSamePredictions(plain, model, [3, CHANNELS]);
      model.dispose();
    }
    plain.dispose();
  });

  it('a Keras BatchNormalization(renorm=True) fixture, with registerKerasAliases()', async () => {
    registerKerasAliases();
    try {
      const f = readDir(nodePath.join(KERAS, 'tf2_dense_renorm'));
      const plain = await tfl.loadLayersModel(tf.io.fromMemory(artifactsOf(f)));
      const viaChecked = await tfl.loadLayersModel(checked(tf.io.fromMemory(artifactsOf(f))));
      const viaDisk = await tfl.loadLayersModel(fileSystem(nodePath.join(KERAS, 'tf2_dense_renorm')));
      expect(viaChecked.getLayer('batch_normalization')).toBeInstanceOf(BatchRenormLayer);
      for (const model of [viaChecked, viaDisk]) {
        expectIdenticalWeights(plain, model);
        expectSamePredictions(plain, model, [3, 5]);
      }
      // The renorm weights are checked too: a negative moving_stddev fails before building.
      const {offset} = locate(f, 'batch_normalization/moving_stddev');
      new DataView(f.weights.buffer).setFloat32(offset + 8, -0.5, true);
      const tensors = tf.memory().numTensors;
      await expect(tfl.loadLayersModel(checked(tf.io.fromMemory(artifactsOf(f))))).rejects.toThrow(
          "BatchNormalization 'batch_normalization': weight 'moving_stddev' holds -0.5 at index 2; expected finite " +
          'values >= 0');
      expect(tf.memory().numTensors).toBe(tensors);
      for (const model of [plain, viaChecked, viaDisk]) model.dispose();
    } finally {
      unregisterKerasAliases();
    }
  });

  it('a Keras BatchNormalization(virtual_batch_size=2) fixture: weights [1, 1, 1, 1, C], C at the saved axis', async () => {
    registerKerasAliases();
    try {
      const f = readDir(nodePath.join(KERAS, 'tf2_virtual_batch'));
      // As saved, its [1, 1, 1, 1, 3] weights cannot be written by tfjs: validation points to fromKeras.
      await expect(tfl.loadLayersModel(checked(tf.io.fromMemory(artifactsOf(f))))).rejects.toThrow(
          "BatchNormalization 'batch_normalization': invalid axis [4]; a built tf.keras layer with virtual_batch_size");
      const plain = await tfl.loadLayersModel(tf.io.fromMemory(kerasGhostArtifacts(artifactsOf(f))));
      const viaKeras = await tfl.loadLayersModel(fromKeras(tf.io.fromMemory(artifactsOf(f))));
      expect((viaKeras.getLayer('batch_normalization') as BatchNormLayer).virtualBatchSize).toBe(2);
      expectIdenticalWeights(plain, viaKeras);
      expectSamePredictions(plain, viaKeras, [3, 2, 2, 3]);
      // The channels at another axis of the Keras shape are not this layer's: left as they are, and refused.
      const moved = artifactsOf(f);
      moved.weightSpecs = moved.weightSpecs!.map((s) => s.name.endsWith('/beta') ? {...s, shape: [1, 1, 1, 3, 1]} : s);
      expect(() => validateModelArtifacts(kerasGhostArtifacts(moved))).toThrow(
          "BatchNormalization 'batch_normalization': weight 'beta' must have shape [3]; received [1, 1, 1, 3, 1].");
      for (const model of [plain, viaKeras]) model.dispose();
    } finally {
      unregisterKerasAliases();
    }
  });

  it('a BatchRenormLayer saved after warm-up steps keeps its renorm_step', async () => {
    const model = tfl.sequential({layers: [
      new BatchRenormLayer({name: 'brn', inputShape: [3], renormClipping: {rmax: 3, dmax: 5},
        renormWarmup: {plainSteps: 1, rmaxReachedAt: 4, dmaxReachedAt: 4}}),
      tfl.layers.dense({units: 1, name: 'out'}),
    ]});
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    const [x, y] = [tf.randomNormal([8, 3], 0, 1, 'float32', 3), tf.randomNormal([8, 1], 0, 1, 'float32', 4)];
    for (let i = 0; i < 2; i++) await model.trainOnBatch(x, y);
    tf.dispose([x, y]);
    const dir = nodePath.join(models.scratch, 'warm');
    await model.save(fileSystem(dir));
    const f = readDir(dir);
    expect(specs(f).find((s) => s.name === 'brn/renorm_step')!.shape).toEqual([]);
    for (const loaded of [
      await tfl.loadLayersModel(fileSystem(dir)), await tfl.loadLayersModel(checked(tf.io.fromMemory(artifactsOf(f)))),
    ]) {
      expect((loaded.getLayer('brn') as BatchRenormLayer).renormStep!.read().dataSync()[0]).toBe(2);
      expectIdenticalWeights(model, loaded);
      expectSamePredictions(model, loaded, [4, 3]);
      loaded.dispose();
    }
    model.dispose();
  });

  it('weightData as several ArrayBuffers, split inside a weight', async () => {
    const f = clone(models.base.BRN);
    const split = (w: Uint8Array, at: number[]) =>
      [0, ...at].map((start, i) => w.slice(start, [...at, w.length][i]).buffer as ArrayBuffer);
    const {offset} = locate(f, 'norm/moving_stddev');
    const parts = split(f.weights, [offset + 6, offset + 10]);
    const plain = await load('memory', f, models.scratch);
    const model = await tfl.loadLayersModel(checked(tf.io.fromMemory({...artifactsOf(f), weightData: parts})));
    expectIdenticalWeights(plain, model);
    plain.dispose();
    model.dispose();
    // A NaN whose bytes straddle two of the buffers is found.
    new DataView(f.weights.buffer).setFloat32(offset + 4, NaN, true);
    expect(() => validateModelArtifacts({...artifactsOf(f), weightData: split(f.weights, [offset + 6, offset + 10])}))
        .toThrow("BatchRenormLayer 'norm': weight 'moving_stddev' holds NaN at index 1");
  });

  it('quantized weights are read as tfjs dequantizes them', async () => {
    const f = clone(models.base.BN);
    const {offset, length} = locate(f, 'norm/moving_variance');
    // moving_variance as uint8 with scale 0.5: stored 2, 4, 6, 8 mean 1, 2, 3, 4.
    const quantize = (min: number) => {
      const artifacts = artifactsOf(f);
      artifacts.weightSpecs = artifacts.weightSpecs!.map((s) => s.name !== 'norm/moving_variance' ? s :
        {...s, quantization: {dtype: 'uint8' as const, scale: 0.5, min}});
      artifacts.weightData = new Uint8Array([...f.weights.subarray(0, offset), 2, 4, 6, 8,
        ...f.weights.subarray(offset + length)]).buffer;
      return artifacts;
    };
    const model = await tfl.loadLayersModel(checked(tf.io.fromMemory(quantize(0))));
    expect(Array.from((model.getLayer('norm') as BatchNormLayer).movingVariance.read().dataSync())).toEqual([1, 2, 3, 4]);
    model.dispose();
    expect(() => validateModelArtifacts(quantize(-2))).toThrow(
        "BatchNormLayer 'norm': weight 'moving_variance' holds -1 at index 0; expected finite values >= 0");
    // float16: 0x3c00 is 1, 0x7e00 is NaN.
    const artifacts = artifactsOf(f);
    artifacts.weightSpecs = artifacts.weightSpecs!.map((s) => s.name !== 'norm/gamma' ? s :
      {...s, quantization: {dtype: 'float16' as const}});
    const {offset: g, length: gl} = locate(f, 'norm/gamma');
    artifacts.weightData = new Uint8Array([...f.weights.subarray(0, g), ...new Uint8Array(new Uint16Array(
        [0x3c00, 0x3c00, 0x7e00, 0x3c00]).buffer), ...f.weights.subarray(g + gl)]).buffer;
    expect(() => validateModelArtifacts(artifacts)).toThrow("BatchNormLayer 'norm': weight 'gamma' holds NaN at index 2");
  });
});

describe('the manifest', () => {
  const withSpec = (change: Record<string, unknown>) => {
    const artifacts = artifactsOf(clone(models.base.BN));
    artifacts.weightSpecs = artifacts.weightSpecs!.map((s, i) => i === 0 ? {...s, ...change} as typeof s : s);
    return artifacts;
  };

  it.each([
    [{shape: [-4]}, 'Model weights: weight "norm/gamma" has shape [-4]; expected a list of non-negative integers.'],
    [{shape: [2.5]}, 'has shape [2.5]'],
    [{shape: '4'}, 'has shape "4"'],
    [{shape: [2 ** 60]}, 'has shape [1152921504606847000]'],
    [{dtype: 'float64'}, 'Model weights: weight "norm/gamma" has dtype "float64"; expected one of'],
    [{dtype: 'constructor'}, 'has dtype "constructor"'],
    [{name: 7}, 'Model weights: weight 7 has no name.'],
  ])('%j fails', (change, message) => {
    expect(() => validateModelArtifacts(withSpec(change))).toThrow(message);
  });

  it('weight specs that are not a list fail', () => {
    expect(() => validateModelArtifacts({...artifactsOf(clone(models.base.BN)), weightSpecs: {} as never}))
        .toThrow('Model weights: the weight specs must be a list.');
  });

  it('a weight of a layer named like ours plus a slash is not ours', () => {
    const f = clone(models.base.BN);
    const artifacts = artifactsOf(f);
    const dense = (artifacts.modelTopology as {config: {layers: Array<{config: {name: string}}>}}).config.layers[1];
    dense.config.name = 'norm/x';
    artifacts.weightSpecs = artifacts.weightSpecs!.map((s) => ({...s, name: s.name.replace(/^dense\//, 'norm/x/')}));
    expect(() => validateModelArtifacts(artifacts)).not.toThrow();
  });

  it('declared sizes must add up to weightData exactly', () => {
    const artifacts = artifactsOf(clone(models.base.BN));
    const bytes = new Uint8Array(artifacts.weightData as ArrayBuffer);
    expect(() => validateModelArtifacts({...artifacts, weightData: [bytes.buffer, new ArrayBuffer(4)]})).toThrow(
        `Model weights: the weight data holds ${bytes.length + 4} bytes but the manifest declares ${bytes.length} ` +
        '(from another model?).');
    expect(() => validateModelArtifacts({...artifacts, weightData: undefined}))
        .toThrow('Model weights: weight "norm/gamma" of shape [4] needs bytes 0 to 16, but the weight data holds only 0');
  });

  it('string weights: their byte length is read from the data', () => {
    const text = new TextEncoder().encode('abc');
    const data = new Uint8Array([3, 0, 0, 0, ...text, 0, 0, 0, 0]);
    const spec = {name: 's', shape: [2], dtype: 'string' as const};
    expect(() => validateModelArtifacts({weightSpecs: [spec], weightData: data.buffer})).not.toThrow();
    expect(() => validateModelArtifacts({weightSpecs: [spec], weightData: data.slice(0, 9).buffer}))
        .toThrow('weight "s" of shape [2] needs bytes 0 to Infinity, but the weight data holds only 9 bytes');
  });
});

describe('savedWeights matches what build creates', () => {
  // Validating a freshly saved model checks the declaration: a missing or extra name would fail.
  const variants: Array<[string, () => NormalizationLayer]> = [
    ['BatchNormLayer', () => new BatchNormLayer({})],
    ['BatchNormLayer center false', () => new BatchNormLayer({center: false})],
    ['BatchNormLayer scale false', () => new BatchNormLayer({scale: false})],
    ['BatchRenormLayer', () => new BatchRenormLayer({})],
    ['BatchRenormLayer with warm-up', () => new BatchRenormLayer({renormClipping: {rmax: 2, dmax: 1},
      renormWarmup: {plainSteps: 1, rmaxReachedAt: 2, dmaxReachedAt: 2}})],
    ['GroupNormLayer', () => new GroupNormLayer({groups: 2})],
    ['GroupNormLayer center and scale false', () => new GroupNormLayer({groups: 2, center: false, scale: false})],
    ['Addons GroupNormalization', () => new AddonsGroupNormalization({})],
    ['Addons InstanceNormalization', () => new AddonsInstanceNormalization({})],
    ['examples/extend.ts FilterResponseNorm', () => new FilterResponseNorm({})],
  ];
  it.each(variants)('%s', async (_, make) => {
    const layer = make();
    const model = tfl.sequential({layers: [tfl.layers.inputLayer({inputShape: [2, 2, CHANNELS]}), layer]});
    let saved!: tf.io.ModelArtifacts;
    await model.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    expect(saved.weightSpecs!.map((s) => s.name)).toEqual(layer.weights.map((w) => w.originalName));
    expect(() => validateModelArtifacts({...saved, modelTopology: JSON.parse(JSON.stringify(saved.modelTopology))}))
        .not.toThrow();
    model.dispose();
  });
});

describe('the channel count, when the layer declares no input shape', () => {
  // As for a layer after another one: the weights' shapes alone must agree.
  const withoutInputShape = (shapes: Record<string, number[]>) => {
    const artifacts = artifactsOf(clone(models.base.BN));
    const config = ((artifacts.modelTopology as {config: {layers: Array<{config: Record<string, unknown>}>}})
        .config.layers[0].config);
    delete config.batch_input_shape;
    artifacts.weightSpecs = artifacts.weightSpecs!.map((s) => ({...s, shape: shapes[s.name] ?? s.shape}));
    return artifacts;
  };

  it('is the first rank-1 weight\'s', () => {
    expect(() => validateModelArtifacts(withoutInputShape({}))).not.toThrow();
    expect(() => validateModelArtifacts(withoutInputShape({'norm/beta': [2, 2]})))
        .toThrow("BatchNormLayer 'norm': weight 'beta' must have shape [4]; received [2, 2].");
  });

  it('with no rank-1 weight at all, the first weight is named', () => {
    const square = Object.fromEntries(['gamma', 'beta', 'moving_mean', 'moving_variance'].map((n) => [`norm/${n}`, [2, 2]]));
    expect(() => validateModelArtifacts(withoutInputShape(square)))
        .toThrow("BatchNormLayer 'norm': weight 'gamma' must have shape [channels]; received [2, 2].");
  });
});

describe('checked()', () => {
  it('passes save through and refuses a handler without load', async () => {
    let saved: tf.io.ModelArtifacts | null = null;
    const handler = checked({
      load: async () => artifactsOf(clone(models.base.BN)),
      save: async (a) => { saved = a; return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}}; },
    });
    const model = await tfl.loadLayersModel(handler);
    await model.save(handler);
    expect(saved).not.toBeNull();
    model.dispose();
    expect(() => checked({} as tf.io.IOHandler)).toThrow('checked: expected an IOHandler with a load() method');
  });
});

describe('classes whose weights the validator cannot know, and nested models', () => {
  /** A user's subclass that adds a weight without declaring statisticWeights. */
  class UndeclaredScale extends BatchNormLayer {
    static override className = 'UndeclaredScaleForValidateTest';
    protected override buildStatistics(inputShape: tfl.Shape, channels: number): void {
      super.buildStatistics(inputShape, channels);
      this.addWeight('s', [channels], 'float32', tfl.initializers.ones());
    }
  }
  tf.serialization.registerClass(UndeclaredScale);

  async function saved(model: tfl.LayersModel, name: string): Promise<Files> {
    const dir = nodePath.join(models.scratch, name);
    await model.save(fileSystem(dir));
    return readDir(dir);
  }

  it('an undeclared weight of a user subclass loads through checked() and fileSystem as through fromMemory', async () => {
    const model = tfl.sequential({layers: [new UndeclaredScale({name: 'sc', inputShape: [3]})]});
    const f = await saved(model, 'undeclared');
    expect(specs(f).map((s) => s.name)).toContain('sc/s');
    for (const source of ['memory', 'checked', 'disk'] as const) {
      const loaded = await load(source, clone(f), models.scratch);
      expectIdenticalWeights(model, loaded);
      loaded.dispose();
    }
    model.dispose();
  });

  it('an undeclared float weight is still checked for finite values', async () => {
    const model = tfl.sequential({layers: [new UndeclaredScale({name: 'sc', inputShape: [3]})]});
    const f = clone(await saved(model, 'undeclared-nan'));
    const {offset} = locate(f, 'sc/s');
    new DataView(f.weights.buffer, f.weights.byteOffset).setFloat32(offset + 4, NaN, true);
    const tensors = tf.memory().numTensors;
    await expect(load('checked', f, models.scratch)).rejects.toThrow(
        "UndeclaredScaleForValidateTest 'sc': weight 's' holds NaN at index 1; expected finite values.");
    expect(tf.memory().numTensors).toBe(tensors);
    model.dispose();
  });

  it('layers of a nested model are checked before tfjs builds anything', async () => {
    const inner = tfl.sequential({name: 'inner', layers: [new BatchNormLayer({name: 'inner_bn', inputShape: [3]})]});
    const model = tfl.sequential({layers: [inner, tfl.layers.dense({units: 2, name: 'out'})]});
    const f = await saved(model, 'nested');
    // fileSystem records what the file needs, at any depth; tfjs ignores the key.
    expect((f.modelJSON as {tfjsNormalization?: {layerClasses: string[]; howToLoad: string}}).tfjsNormalization)
        .toEqual({layerClasses: ['BatchNormLayer'], howToLoad: expect.stringMatching(
            /importing tfjs-normalization .*without it tfjs fails with "Unknown layer: BatchNormLayer"/)});
    const plain = tfl.sequential({layers: [tfl.layers.dense({units: 1, inputShape: [2]})]});
    expect(await saved(plain, 'plain').then((p) => 'tfjsNormalization' in p.modelJSON)).toBe(false);
    plain.dispose();
    const loaded = await load('checked', clone(f), models.scratch);
    expectIdenticalWeights(model, loaded);
    loaded.dispose();
    const broken = clone(f);
    const {offset} = locate(broken, 'inner_bn/moving_variance');
    new DataView(broken.weights.buffer, broken.weights.byteOffset).setFloat32(offset, -1, true);
    const tensors = tf.memory().numTensors;
    await expect(load('checked', broken, models.scratch)).rejects.toThrow(
        "BatchNormLayer 'inner_bn': weight 'moving_variance' holds -1 at index 0; expected finite values >= 0");
    expect(tf.memory().numTensors).toBe(tensors);
    model.dispose();
  });

  it('keras-contrib InstanceNormalization: its weights of shape [1] (axis null) are what it declares', async () => {
    const model = tfl.sequential({layers: [
      new KerasContribInstanceNormalization({name: 'in_all', inputShape: [2, 2, CHANNELS]}),
      new KerasContribInstanceNormalization({name: 'in_channel', axis: -1}),
    ]});
    const f = await saved(model, 'contrib');
    expect(specs(f).find((s) => s.name === 'in_all/gamma')!.shape).toEqual([1]);
    const loaded = await load('disk', clone(f), models.scratch);
    expectIdenticalWeights(model, loaded);
    loaded.dispose();
    model.dispose();
  });
});
