/**
 * Broken and hostile model files for the loading tests (test/io/validate.test.ts,
 * test/reliability/hostile_files.test.ts): a valid saved model per layer kind
 * (the normalization layer 'norm' first, then a Dense), the weight corruptions,
 * and loading through each source.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as nodePath from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, checked, GroupNormLayer, NormalizationLayer} from '../../src';
import {fileSystem} from '../../src/io/file_system';

export type Kind = 'BN' | 'BRN' | 'GN';
export const KINDS: Kind[] = ['BN', 'BRN', 'GN'];
export type Json = Record<string, unknown>;

/** A model as files: model.json (parsed) and weights.bin. */
export interface Files {
  modelJSON: Json;
  weights: Uint8Array;
}

export const CLASS: Record<Kind, string> = {BN: 'BatchNormLayer', BRN: 'BatchRenormLayer', GN: 'GroupNormalization'};
export const CHANNELS = 4;

function normLayer(kind: Kind): NormalizationLayer {
  const common = {name: 'norm', inputShape: [CHANNELS]};
  switch (kind) {
    case 'BN': return new BatchNormLayer(common);
    case 'BRN': return new BatchRenormLayer({
      ...common, renormClipping: {rmax: 3, dmax: 5}, renormWarmup: {plainSteps: 2, rmaxReachedAt: 10, dmaxReachedAt: 8},
    });
    case 'GN': return new GroupNormLayer({...common, groups: 2});
  }
}

/** The valid model of a kind, saved with fileSystem into `dir`. */
export async function saveBase(kind: Kind, dir: string): Promise<Files> {
  const model = tfl.sequential({layers: [normLayer(kind), tfl.layers.dense({units: 2, name: 'dense'})]});
  await model.save(fileSystem(dir));
  model.dispose();
  return {
    modelJSON: JSON.parse(fs.readFileSync(nodePath.join(dir, 'model.json'), 'utf8')),
    weights: new Uint8Array(fs.readFileSync(nodePath.join(dir, 'weights.bin'))),
  };
}

/**
 * For the enclosing test file: one valid saved model per kind in a scratch
 * directory (created before the tests, removed after). Read the fields inside tests.
 */
export function useBaseModels(prefix: string): {scratch: string; base: Record<Kind, Files>} {
  const saved = {scratch: '', base: {} as Record<Kind, Files>};
  beforeAll(async () => {
    saved.scratch = fs.mkdtempSync(nodePath.join(os.tmpdir(), prefix));
    for (const kind of KINDS) saved.base[kind] = await saveBase(kind, nodePath.join(saved.scratch, `base-${kind}`));
  });
  afterAll(() => fs.rmSync(saved.scratch, {recursive: true, force: true}));
  return saved;
}

export function clone(f: Files): Files {
  return {modelJSON: JSON.parse(JSON.stringify(f.modelJSON)), weights: f.weights.slice()};
}

// ---- Access to the parts of a model.json a case corrupts.

export function specs(f: Files): Array<{name: string; shape: number[]; dtype: string}> {
  return (f.modelJSON.weightsManifest as Array<{weights: Array<{name: string; shape: number[]; dtype: string}>}>)[0].weights;
}

export function layers(f: Files): Json[] {
  return (topology(f).config as {layers: Json[]}).layers;
}

export function topology(f: Files): Json {
  // tfjs writes the model config as the topology itself; Keras's converter wraps it in model_config.
  const t = f.modelJSON.modelTopology as Json;
  return (t.model_config ?? t) as Json;
}

export function normConfig(f: Files): Json {
  return layers(f)[0].config as Json;
}

/** Byte offset and length of a weight in weights.bin (all weights are 4-byte values). */
export function locate(f: Files, name: string): {offset: number; length: number} {
  let offset = 0;
  for (const s of specs(f)) {
    const length = 4 * s.shape.reduce((p, q) => p * q, 1);
    if (s.name === name) return {offset, length};
    offset += length;
  }
  throw new Error(`no weight ${name}`);
}

function splice(bytes: Uint8Array, offset: number, remove: number, insert = new Uint8Array(0)): Uint8Array {
  return new Uint8Array([...bytes.subarray(0, offset), ...insert, ...bytes.subarray(offset + remove)]);
}

/** Overwrites a weight's float32 values in weights.bin. */
export function setValues(f: Files, name: string, values: number[]): void {
  const {offset} = locate(f, name);
  values.forEach((v, i) => new DataView(f.weights.buffer, f.weights.byteOffset).setFloat32(offset + 4 * i, v, true));
}

export const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---- Loading from each source.

/** tfjs's own in-memory loader; `checked` wraps it in validateModelArtifacts; `disk` is fileSystem. */
export type Source = 'memory' | 'checked' | 'disk';

/** model.json text as Python's json module writes it: NaN and Infinity as bare words. */
function pythonJson(value: unknown): string {
  return JSON.stringify(value, (_, v) => typeof v === 'number' && !Number.isFinite(v) ? `@@${v}@@` : v)
      .replace(/"@@(-?\w+)@@"/g, '$1');
}

export function artifactsOf(f: Files): tf.io.ModelArtifacts {
  const modelJSON = f.modelJSON as unknown as tf.io.ModelJSON;
  return {
    modelTopology: modelJSON.modelTopology, format: modelJSON.format, generatedBy: modelJSON.generatedBy,
    convertedBy: modelJSON.convertedBy, weightSpecs: modelJSON.weightsManifest.flatMap((g) => g.weights),
    weightData: f.weights.slice().buffer,
  };
}

let dirCount = 0;

/** Loads the files through `source`; disk files are written to a fresh directory under `scratch`. */
export async function load(source: Source, f: Files, scratch: string): Promise<tfl.LayersModel> {
  if (source !== 'disk') {
    const handler = tf.io.fromMemory(artifactsOf(f));
    return tfl.loadLayersModel(source === 'checked' ? checked(handler) : handler);
  }
  const dir = nodePath.join(scratch, `case-${++dirCount}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(nodePath.join(dir, 'model.json'), pythonJson(f.modelJSON));
  fs.writeFileSync(nodePath.join(dir, 'weights.bin'), f.weights);
  return tfl.loadLayersModel(fileSystem(dir));
}

// ---- The weight cases.

export interface WeightCase {
  name: string;
  corrupt: (f: Files) => void;
  /**
   * Through plain tf.io.fromMemory: tfjs's error, after it built the model, or,
   * for a value tfjs does not check (NaN, a negative variance), the weight it
   * loads unchecked and the values it then holds.
   */
  memory: RegExp | {loads: string; values: number[]};
  /** The error through checked() and fileSystem: it names the layer and the weight. */
  checked: RegExp;
}

/** Every way a weight can be broken in a file, for the layer 'norm' of a kind. */
export function weightCases(kind: Kind): WeightCase[] {
  const cls = CLASS[kind];
  // The statistics a poisoned file would target (GN has none: its gamma).
  const targets = {BN: ['moving_variance'], BRN: ['moving_variance', 'moving_stddev', 'renorm_stddev'], GN: ['gamma']}[kind];
  const w = targets[0];
  // tfjs's own message when a shape differs (LayerVariable.write); the layers check only setWeights.
  const shapeMismatch = (received: string) => new RegExp(`Shape mismatch: \\[4\\] vs\\. \\[${received}\\]`);
  const named = (field: string, rest: string) => new RegExp(`${cls} 'norm': weight '${field}' ${rest}`);
  // Cutting 6 or 8 bytes cuts one of the last weights in the file (tfjs saves trainable weights first).
  const cut = /Model weights: weight "(norm|dense)\/\w+" of shape \[\d*\] needs bytes \d+ to \d+, but the weight data holds only \d+ bytes \(truncated\?\)/;
  const cases: WeightCase[] = [
    {
      name: `missing weight norm/${w}`,
      corrupt: (f) => {
        const {offset, length} = locate(f, `norm/${w}`);
        f.weights = splice(f.weights, offset, length);
        specs(f).splice(specs(f).findIndex((s) => s.name === `norm/${w}`), 1);
      },
      memory: new RegExp(`weights are not set: norm/${w}`),
      checked: named(w, 'is missing from the weights'),
    },
    {
      name: 'extra weight norm/extra_stat',
      corrupt: (f) => {
        specs(f).push({name: 'norm/extra_stat', shape: [CHANNELS], dtype: 'float32'});
        f.weights = splice(f.weights, f.weights.length, 0, new Uint8Array(4 * CHANNELS));
      },
      memory: /Provided weight data has no target variable: norm\/extra_stat/,
      checked: new RegExp(`${cls} 'norm': the weights hold 'norm/extra_stat', which this layer does not have`),
    },
    {
      name: `wrong shape [2, 2] for ${w}`,
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.shape = [2, 2]; },
      memory: shapeMismatch('2,2'), checked: named(w, 'must have shape \\[4\\]; received \\[2, 2\\]'),
    },
    {
      name: `wrong shape [5] for ${w}, with the extra bytes`,
      corrupt: (f) => {
        const {offset, length} = locate(f, `norm/${w}`);
        specs(f).find((s) => s.name === `norm/${w}`)!.shape = [5];
        f.weights = splice(f.weights, offset + length, 0, new Uint8Array(4));
      },
      memory: shapeMismatch('5'), checked: named(w, 'must have shape \\[4\\]; received \\[5\\]'),
    },
    {
      name: `wrong dtype int32 for ${w}`,
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.dtype = 'int32'; },
      memory: /dtype of the new value \(int32\) and previous value \(float32\) must match/,
      checked: named(w, 'must have dtype float32; received int32'),
    },
    {
      name: 'weights file truncated mid-value',
      corrupt: (f) => { f.weights = f.weights.slice(0, f.weights.length - 6); },
      memory: /byte length of Float32Array should be a multiple of 4/, checked: cut,
    },
    {
      name: 'weights file truncated at a value boundary',
      corrupt: (f) => { f.weights = f.weights.slice(0, f.weights.length - 8); },
      memory: /the tensor should have \d+ values but has \d+/, checked: cut,
    },
    {
      name: `huge declared weight shape for ${w}`,
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.shape = [65536, 65536, 65536]; },
      memory: /Based on the provided shape, \[65536,65536,65536\], the tensor should have 281474976710656 values/,
      checked: new RegExp(`Model weights: weight "norm/${w}" of shape \\[65536, 65536, 65536\\] needs bytes \\d+ to ` +
          '1125899906842\\d+, but the weight data holds only \\d+ bytes'),
    },
  ];
  for (const target of targets) {
    const nonNegative = target !== 'gamma';
    const bad: Array<[string, number]> = [['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]];
    if (nonNegative) bad.push(['-1', -1]);
    for (const [label, value] of bad) {
      cases.push({
        name: `${label} in ${target}`,
        corrupt: (f) => setValues(f, `norm/${target}`, [1, value, 1, 1]),
        memory: {loads: target, values: [1, value, 1, 1]},
        checked: named(target, `holds ${esc(label)} at index 1; expected finite values${nonNegative ? ' >= 0' : ''}`),
      });
    }
  }
  if (kind === 'BRN') {
    cases.push({
      name: 'negative renorm_step',
      corrupt: (f) => {
        const {offset} = locate(f, 'norm/renorm_step');
        new DataView(f.weights.buffer, f.weights.byteOffset).setFloat32(offset, -3, true);
      },
      memory: {loads: 'renorm_step', values: [-3]},
      checked: named('renorm_step', 'holds -3 at index 0; expected finite values >= 0'),
    });
  }
  return cases;
}

// ---- Checks after each case.

export function expectFinitePredictions(model: tfl.LayersModel): void {
  const y = tf.tidy(() => (model.predict(tf.ones([2, CHANNELS])) as tf.Tensor).dataSync());
  expect(Array.from(y).every(Number.isFinite)).toBe(true);
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');
const cleanPrototype = prototypeKeys();

/** Nothing was added to Object.prototype. */
export function expectCleanPrototype(): void {
  expect(prototypeKeys()).toBe(cleanPrototype);
  expect(({} as Json).polluted).toBeUndefined();
}
