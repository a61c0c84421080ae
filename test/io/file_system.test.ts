import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {BatchNormLayer, fileSystem, FileOps, nodeFileOps} from '../../src/io';
import {randomData} from '../helpers/reference';

let root: string;
beforeAll(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-norm-fs-')); });
afterAll(() => fs.rmSync(root, {recursive: true, force: true}));

let counter = 0;
function freshDir(): string {
  return path.join(root, `m${counter++}`);
}

/** Dense → BatchNormLayer with non-trivial weights, including moving statistics. */
function makeModel(seed: number): tfl.Sequential {
  const model = tfl.sequential();
  model.add(tfl.layers.dense({units: 3, inputShape: [4]}));
  model.add(new BatchNormLayer({}));
  let s = seed;
  for (const w of model.weights) {
    w.write(tf.tensor(randomData(w.shape.reduce((a, b) => a! * b!, 1)!, s++, 1, 0.5), w.shape as number[]));
  }
  return model;
}

const input = () => tf.tensor2d(randomData(20, 99, 0, 2), [5, 4]);

/** The weights as tfjs encodes them (manifest order), to compare with weights.bin byte for byte. */
async function encoded(model: tfl.LayersModel): Promise<{specs: tf.io.WeightsManifestEntry[]; data: Uint8Array}> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  return {specs: artifacts!.weightSpecs!, data: new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts!.weightData!))};
}

function files(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

describe('fileSystem save', () => {
  it('writes model.json and weights.bin in the tfjs-node layout', async () => {
    const dir = freshDir();
    const model = makeModel(1);
    await model.save(fileSystem(dir));
    expect(files(dir)).toEqual(['model.json', 'weights.bin']);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    // tfjs-node's NodeFileSystem writes exactly these keys (trainingConfig only when compiled); fileSystem adds
    // tfjsNormalization (ignored by tfjs) when the model holds this package's layers.
    expect(Object.keys(json).sort()).toEqual(
        ['convertedBy', 'format', 'generatedBy', 'modelTopology', 'tfjsNormalization', 'weightsManifest']);
    expect(json.format).toBe('layers-model');
    expect(json.generatedBy).toMatch(/^TensorFlow\.js tfjs-layers v/);
    const {specs, data} = await encoded(model);
    expect(json.weightsManifest).toEqual([{paths: ['weights.bin'], weights: specs}]);
    expect(new Uint8Array(fs.readFileSync(path.join(dir, 'weights.bin')))).toEqual(data);
  });

  it('includes trainingConfig of a compiled model', async () => {
    const dir = freshDir();
    const model = makeModel(2);
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    await model.save(fileSystem(dir), {includeOptimizer: true});
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
    expect(json.trainingConfig.loss).toBe('mean_squared_error');
  });

  it('fails clearly when the directory cannot be created', async () => {
    const file = path.join(root, 'plain-file');
    fs.writeFileSync(file, 'x');
    await expect(makeModel(3).save(fileSystem(path.join(file, 'sub')))).rejects.toThrow(/cannot create the model directory/);
  });
});

describe('fileSystem round trip', () => {
  it('loads bit-exactly what it saved, by directory, model.json path and file:// URL', async () => {
    const dir = freshDir();
    const model = makeModel(4);
    await model.save(`file://${dir}`);
    const x = input();
    const expected = (model.predict(x) as tf.Tensor).dataSync();
    for (const source of [fileSystem(dir), fileSystem(path.join(dir, 'model.json')), `file://${dir}/model.json`]) {
      const loaded = await tfl.loadLayersModel(source);
      expect(loaded.layers[1]).toBeInstanceOf(BatchNormLayer);
      loaded.weights.forEach((w, i) => expect(w.read().dataSync()).toEqual(model.weights[i].read().dataSync()));
      expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual(expected);
    }
  });

  it('loads files laid out by tfjs-node (model.json written independently of the handler)', async () => {
    const dir = freshDir();
    fs.mkdirSync(dir);
    const model = makeModel(5);
    const {specs, data} = await encoded(model);
    const topology = model.toJSON(null, false);
    // tfjs-node's NodeFileSystem.save: JSON.stringify(modelJSON) then the weights, two plain writes.
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
      modelTopology: topology, weightsManifest: [{paths: ['weights.bin'], weights: specs}],
      format: 'layers-model', generatedBy: 'TensorFlow.js tfjs-layers v4.22.0', convertedBy: null,
    }));
    fs.writeFileSync(path.join(dir, 'weights.bin'), data);
    const loaded = await tfl.loadLayersModel(fileSystem(dir));
    const x = input();
    expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual((model.predict(x) as tf.Tensor).dataSync());
  });

  it('reads multi-shard groups in order', async () => {
    const dir = freshDir();
    fs.mkdirSync(dir);
    const model = makeModel(6);
    const {specs, data} = await encoded(model);
    fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
      modelTopology: model.toJSON(null, false), format: 'layers-model',
      weightsManifest: [{paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: specs}],
    }));
    fs.writeFileSync(path.join(dir, 'group1-shard1of2.bin'), data.slice(0, 20));
    fs.writeFileSync(path.join(dir, 'group1-shard2of2.bin'), data.slice(20));
    const loaded = await tfl.loadLayersModel(fileSystem(dir));
    loaded.weights.forEach((w, i) => expect(w.read().dataSync()).toEqual(model.weights[i].read().dataSync()));
  });
});

describe('fileSystem atomic save', () => {
  /** Ops that throw when `failOn` matches a call. */
  function failing(failOn: (op: string, paths: string[]) => boolean): Partial<FileOps> {
    const wrap = <K extends keyof FileOps>(op: K) => (async (...args: unknown[]) => {
      const paths = args.filter((a): a is string => typeof a === 'string');
      if (op === 'writeFile') paths.length = 1;
      if (failOn(op, paths)) throw new Error(`injected failure in ${op}(${paths.map((p) => path.basename(p)).join(', ')})`);
      return (nodeFileOps[op] as (...a: unknown[]) => Promise<unknown>)(...args);
    }) as unknown as FileOps[K];
    return {writeFile: wrap('writeFile'), rename: wrap('rename'), unlink: wrap('unlink')};
  }

  async function savedOld(): Promise<{dir: string; old: tfl.Sequential}> {
    const dir = freshDir();
    const old = makeModel(10);
    await old.save(fileSystem(dir));
    return {dir, old};
  }

  it('a failure while writing model.json keeps the old model intact and leaves no temporary files', async () => {
    const {dir, old} = await savedOld();
    const before = files(dir).map((f) => fs.readFileSync(path.join(dir, f)));
    const handler = fileSystem(dir, {ops: failing((op, [p]) => op === 'writeFile' && p.includes('model.json'))});
    await expect(makeModel(20).save(handler)).rejects.toThrow(/saving the model to .* failed.*injected failure/);
    expect(files(dir)).toEqual(['model.json', 'weights.bin']);
    expect(files(dir).map((f) => fs.readFileSync(path.join(dir, f)))).toEqual(before);
    const loaded = await tfl.loadLayersModel(fileSystem(dir));
    const x = input();
    expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual((old.predict(x) as tf.Tensor).dataSync());
  });

  it('a failure between the weights and the model.json rename leaves no model.json, never a mismatched pair', async () => {
    const {dir} = await savedOld();
    const handler = fileSystem(dir, {ops: failing((op, args) => op === 'rename' && args[1].endsWith('model.json'))});
    await expect(makeModel(21).save(handler)).rejects.toThrow(/injected failure in rename/);
    expect(files(dir)).toEqual(['weights.bin']);
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(/cannot read .*model\.json: no such file/);
  });

  it('a failed weights write into a new directory leaves nothing behind the final names', async () => {
    const dir = freshDir();
    const handler = fileSystem(dir, {ops: failing((op, [p]) => op === 'writeFile' && p.includes('weights.bin'))});
    await expect(makeModel(22).save(handler)).rejects.toThrow(/injected failure in writeFile/);
    expect(files(dir)).toEqual([]);
  });

  it('overwrites an existing model completely', async () => {
    const {dir} = await savedOld();
    const next = makeModel(23);
    await next.save(fileSystem(dir));
    expect(files(dir)).toEqual(['model.json', 'weights.bin']);
    const loaded = await tfl.loadLayersModel(fileSystem(dir));
    const x = input();
    expect((loaded.predict(x) as tf.Tensor).dataSync()).toEqual((next.predict(x) as tf.Tensor).dataSync());
  });
});

describe('fileSystem load errors name the file', () => {
  async function saved(): Promise<string> {
    const dir = freshDir();
    await makeModel(30).save(fileSystem(dir));
    return dir;
  }
  const editJson = (dir: string, edit: (json: any) => void) => {
    const p = path.join(dir, 'model.json');
    const json = JSON.parse(fs.readFileSync(p, 'utf8'));
    edit(json);
    fs.writeFileSync(p, JSON.stringify(json));
  };

  it('missing directory or model.json', async () => {
    const dir = freshDir();
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(`cannot load a model from ${dir}: no such file`);
    fs.mkdirSync(dir);
    await expect(tfl.loadLayersModel(fileSystem(dir)))
        .rejects.toThrow(`cannot read ${path.join(dir, 'model.json')}: no such file`);
  });

  it('invalid JSON and JSON that is not a model', async () => {
    const dir = await saved();
    const p = path.join(dir, 'model.json');
    fs.writeFileSync(p, '{"modelTopology": ');
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(`${p} is not valid JSON`);
    fs.writeFileSync(p, '[1, 2]');
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(`${p} is not a model.json`);
  });

  it('missing weights file', async () => {
    const dir = await saved();
    fs.unlinkSync(path.join(dir, 'weights.bin'));
    await expect(tfl.loadLayersModel(fileSystem(dir)))
        .rejects.toThrow(`cannot read weights file ${path.join(dir, 'weights.bin')}`);
  });

  it('weights shorter or longer than the manifest says', async () => {
    const dir = await saved();
    const w = path.join(dir, 'weights.bin');
    const data = fs.readFileSync(w);
    fs.writeFileSync(w, data.subarray(0, data.length - 4));
    await expect(tfl.loadLayersModel(fileSystem(dir)))
        .rejects.toThrow(new RegExp(`^fileSystem: ${path.join(dir, 'model.json')}: Model weights: weight "\\w+/\\w+" ` +
            `of shape \\[\\d+\\] needs bytes \\d+ to ${data.length}, but the weight data holds only ${data.length - 4} ` +
            'bytes \\(truncated\\?\\)\\.$'));
    fs.writeFileSync(w, Buffer.concat([data, Buffer.alloc(4)]));
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(`the weight data holds ${data.length + 4} bytes ` +
        `but the manifest declares ${data.length} (from another model?)`);
  });

  it('refuses weights paths outside the model directory', async () => {
    const dir = await saved();
    const secret = path.join(root, 'secret.bin');
    fs.writeFileSync(secret, fs.readFileSync(path.join(dir, 'weights.bin')));
    const cases: Array<[string, RegExp]> = [
      ['../../etc/passwd', /points outside the model directory/],
      ['../secret.bin', /points outside the model directory/],
      [secret, /is absolute/],
      ['file:///etc/passwd', /is absolute/],
      ['', /is not a file name/],
    ];
    for (const [p, message] of cases) {
      editJson(dir, (json) => { json.weightsManifest[0].paths = [p]; });
      await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(message);
    }
    // A link inside the directory that leads out of it.
    fs.symlinkSync(secret, path.join(dir, 'link.bin'));
    editJson(dir, (json) => { json.weightsManifest[0].paths = ['link.bin']; });
    await expect(tfl.loadLayersModel(fileSystem(dir))).rejects.toThrow(/resolves \(through a link\) outside/);
  });
});

describe('file:// router', () => {
  it('defers to another file:// router registered later (tfjs-node imported after this package)', async () => {
    expect(tf.io.getSaveHandlers('file:///tmp/x')).toHaveLength(1);
    const other: tf.io.IOHandler = {save: async () => ({modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}})};
    tf.io.registerSaveRouter(((url: string) => url.startsWith('file://') ? other : null) as never);
    expect(tf.io.getSaveHandlers('file:///tmp/x')).toEqual([other]);
  });
});
