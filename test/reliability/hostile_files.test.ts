/**
 * Hostile and broken model files, loaded with tf.loadLayersModel from memory
 * (tf.io.fromMemory) and from disk (the package's fileSystem handler).
 *
 * Each case starts from a valid saved model (the normalization layer first,
 * so a bad config fails before any other layer allocates) and corrupts one
 * thing. Every case must end in a clear Error, quickly, without allocating
 * the declared size, without touching Object.prototype, and without leaving
 * tensors behind beyond what tfjs-layers itself keeps when loading fails
 * after building the model (see `leakBound`).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as nodePath from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationLayer} from '../../src';
import {fileSystem} from '../../src/io/file_system';

type Kind = 'BN' | 'BRN' | 'GN';
type Json = Record<string, unknown>;

/** A model as files: model.json (parsed) and weights.bin. */
interface Files {
  modelJSON: Json;
  weights: Uint8Array;
}

const CLASS: Record<Kind, string> = {BN: 'BatchNormLayer', BRN: 'BatchRenormLayer', GN: 'GroupNormalization'};
const CHANNELS = 4;

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

let scratch: string;
const base: Partial<Record<Kind, Files>> = {};

beforeAll(async () => {
  scratch = fs.mkdtempSync(nodePath.join(os.tmpdir(), 'hostile-'));
  for (const kind of ['BN', 'BRN', 'GN'] as Kind[]) {
    const model = tfl.sequential({layers: [normLayer(kind), tfl.layers.dense({units: 2, name: 'dense'})]});
    const dir = nodePath.join(scratch, `base-${kind}`);
    await model.save(fileSystem(dir));
    model.dispose();
    base[kind] = {
      modelJSON: JSON.parse(fs.readFileSync(nodePath.join(dir, 'model.json'), 'utf8')),
      weights: new Uint8Array(fs.readFileSync(nodePath.join(dir, 'weights.bin'))),
    };
  }
});

afterAll(() => fs.rmSync(scratch, {recursive: true, force: true}));

// ---- Access to the parts of a model.json a case corrupts.

function specs(f: Files): Array<{name: string; shape: number[]; dtype: string}> {
  return (f.modelJSON.weightsManifest as Array<{weights: Array<{name: string; shape: number[]; dtype: string}>}>)[0].weights;
}

function layers(f: Files): Json[] {
  return (topology(f).config as {layers: Json[]}).layers;
}

function topology(f: Files): Json {
  // tfjs writes the model config as the topology itself; Keras's converter wraps it in model_config.
  const t = f.modelJSON.modelTopology as Json;
  return (t.model_config ?? t) as Json;
}

function normConfig(f: Files): Json {
  return layers(f)[0].config as Json;
}

/** Byte offset and length of a weight in weights.bin (all weights are 4-byte values). */
function locate(f: Files, name: string): {offset: number; length: number} {
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

/** Sets an own property, even `__proto__`, as JSON.parse would. */
function setOwn(obj: Json, key: string, value: unknown): void {
  Object.defineProperty(obj, key, {value, enumerable: true, writable: true, configurable: true});
}

// ---- Loading from each source.

/** model.json text as Python's json module writes it: NaN and Infinity as bare words. */
function pythonJson(value: unknown): string {
  return JSON.stringify(value, (_, v) => typeof v === 'number' && !Number.isFinite(v) ? `@@${v}@@` : v)
      .replace(/"@@(-?\w+)@@"/g, '$1');
}

let dirCount = 0;

async function load(source: 'memory' | 'disk', f: Files): Promise<tfl.LayersModel> {
  if (source === 'memory') {
    const modelJSON = f.modelJSON as unknown as tf.io.ModelJSON;
    return tfl.loadLayersModel(tf.io.fromMemory({
      modelTopology: modelJSON.modelTopology, format: modelJSON.format, generatedBy: modelJSON.generatedBy,
      convertedBy: modelJSON.convertedBy, weightSpecs: modelJSON.weightsManifest.flatMap((g) => g.weights),
      weightData: f.weights.slice().buffer,
    }));
  }
  const dir = nodePath.join(scratch, `case-${++dirCount}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(nodePath.join(dir, 'model.json'), pythonJson(f.modelJSON));
  fs.writeFileSync(nodePath.join(dir, 'weights.bin'), f.weights);
  return tfl.loadLayersModel(fileSystem(dir));
}

// ---- The cases.

/** Where a case fails: before building (nothing allocated), or after tfjs built the model and decoded weights. */
type Stage = 'config' | 'weights';

interface Case {
  name: string;
  corrupt: (f: Files) => void;
  /** The error, per source; 'loads' for values that are valid however odd. */
  memory: RegExp | 'loads';
  disk: RegExp | 'loads';
  stage: Stage;
}

/** Overwrites a weight's float32 values in weights.bin. */
function setValues(f: Files, name: string, values: number[]): void {
  const {offset} = locate(f, name);
  values.forEach((v, i) => new DataView(f.weights.buffer, f.weights.byteOffset).setFloat32(offset + 4 * i, v, true));
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function weightCases(kind: Kind): Case[] {
  const cls = CLASS[kind];
  // The statistics a poisoned file would target (GN has none: its gamma).
  const targets = {BN: ['moving_variance'], BRN: ['moving_variance', 'moving_stddev', 'renorm_stddev'], GN: ['gamma']}[kind];
  const w = targets[0];
  const both = (re: RegExp) => ({memory: re, disk: re});
  const named = (field: string, rest: string) => new RegExp(`${cls} 'norm': weight '${field}' ${rest}`);
  const truncatedOnDisk = /fileSystem: weights file .*weights\.bin holds \d+ bytes but .*model\.json lists weights needing \d+ bytes \(truncated\?\)/;
  const cases: Case[] = [
    {
      name: `missing weight norm/${w}`, stage: 'weights',
      corrupt: (f) => {
        const {offset, length} = locate(f, `norm/${w}`);
        f.weights = splice(f.weights, offset, length);
        specs(f).splice(specs(f).findIndex((s) => s.name === `norm/${w}`), 1);
      },
      ...both(new RegExp(`weights are not set: norm/${w}`)),
    },
    {
      name: 'extra weight norm/extra_stat', stage: 'weights',
      corrupt: (f) => {
        specs(f).push({name: 'norm/extra_stat', shape: [CHANNELS], dtype: 'float32'});
        f.weights = splice(f.weights, f.weights.length, 0, new Uint8Array(4 * CHANNELS));
      },
      ...both(/Provided weight data has no target variable: norm\/extra_stat/),
    },
    {
      name: `wrong shape [2, 2] for ${w}`, stage: 'weights',
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.shape = [2, 2]; },
      ...both(named(w, 'must have shape \\[4\\]; received \\[2, 2\\]')),
    },
    {
      name: `wrong shape [5] for ${w}, with the extra bytes`, stage: 'weights',
      corrupt: (f) => {
        const {offset, length} = locate(f, `norm/${w}`);
        specs(f).find((s) => s.name === `norm/${w}`)!.shape = [5];
        f.weights = splice(f.weights, offset + length, 0, new Uint8Array(4));
      },
      ...both(named(w, 'must have shape \\[4\\]; received \\[5\\]')),
    },
    {
      name: `wrong dtype int32 for ${w}`, stage: 'weights',
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.dtype = 'int32'; },
      ...both(named(w, 'must have dtype float32; received int32')),
    },
    {
      name: 'weights file truncated mid-value', stage: 'weights',
      corrupt: (f) => { f.weights = f.weights.slice(0, f.weights.length - 6); },
      // tfjs's own decoder message (the memory path has no file to name).
      memory: /byte length of Float32Array should be a multiple of 4/, disk: truncatedOnDisk,
    },
    {
      name: 'weights file truncated at a value boundary', stage: 'weights',
      corrupt: (f) => { f.weights = f.weights.slice(0, f.weights.length - 8); },
      memory: /the tensor should have \d+ values but has \d+/, disk: truncatedOnDisk,
    },
    {
      name: `huge declared weight shape for ${w}`, stage: 'weights',
      corrupt: (f) => { specs(f).find((s) => s.name === `norm/${w}`)!.shape = [65536, 65536, 65536]; },
      memory: /Based on the provided shape, \[65536,65536,65536\], the tensor should have 281474976710656 values/,
      disk: /fileSystem: weights file .* holds \d+ bytes but .* lists weights needing \d+ bytes/,
    },
  ];
  for (const target of targets) {
    const nonNegative = target !== 'gamma';
    const bad: Array<[string, number]> = [['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]];
    if (nonNegative) bad.push(['-1', -1]);
    for (const [label, value] of bad) {
      cases.push({
        name: `${label} in ${target}`, stage: 'weights',
        corrupt: (f) => setValues(f, `norm/${target}`, [1, value, 1, 1]),
        ...both(named(target, `holds ${esc(label)} at index 1; expected finite values${nonNegative ? ' >= 0' : ''}`)),
      });
    }
  }
  if (kind === 'BRN') {
    cases.push({
      name: 'negative renorm_step', stage: 'weights',
      corrupt: (f) => {
        const {offset} = locate(f, 'norm/renorm_step');
        new DataView(f.weights.buffer, f.weights.byteOffset).setFloat32(offset, -3, true);
      },
      ...both(named('renorm_step', 'holds -3 at index 0; expected finite values >= 0')),
    });
  }
  return cases;
}

function configCases(kind: Kind): Case[] {
  const cls = CLASS[kind];
  const invalid = (field: string, shown: string) => new RegExp(`${cls} 'norm': invalid ${field} ${esc(shown)}`);
  const notJson = /fileSystem: .*model\.json is not valid JSON/;
  const cases: Case[] = [];
  // Keys that name the prototype chain, in our layer's config.
  for (const [key, shownAs] of [['__proto__', 'Proto'], ['constructor', 'constructor'], ['prototype', 'prototype']]) {
    cases.push({
      name: `config key ${key}`, stage: 'config',
      corrupt: (f) => setOwn(normConfig(f), key, {polluted: true, prototype: {polluted: true}}),
      memory: new RegExp(`${cls} 'norm': unknown config field '${shownAs}'`),
      disk: new RegExp(`${cls} 'norm': unknown config field '${shownAs}'`),
    });
  }
  // Elsewhere in the topology tfjs reads only the keys it knows (own keys, copied
  // into fresh objects), so these load unchanged; the checks below confirm
  // Object.prototype is untouched.
  const pollute = {polluted: true, prototype: {polluted: true}};
  for (const [where, target] of [
    ['the model config', (f: Files) => topology(f).config as Json],
    ['the topology', (f: Files) => topology(f)],
    ['an initializer config', (f: Files) => (normConfig(f).gamma_initializer as Json).config as Json],
  ] as Array<[string, (f: Files) => Json]>) {
    cases.push({
      name: `__proto__ and constructor keys in ${where}`, stage: 'config', memory: 'loads', disk: 'loads',
      corrupt: (f) => { setOwn(target(f), '__proto__', pollute); setOwn(target(f), 'constructor', pollute); },
    });
  }
  for (const [className, shownAs] of [['constructor', 'constructor'], ['__proto__', 'Proto'], ['toString', 'toString']]) {
    cases.push({
      name: `layer class_name ${className}`, stage: 'config',
      corrupt: (f) => { layers(f)[0].class_name = className; },
      memory: new RegExp(`Unknown layer: ${shownAs}\\.`), disk: new RegExp(`Unknown layer: ${shownAs}\\.`),
    });
  }
  cases.push({
    name: 'initializer class_name constructor', stage: 'config',
    corrupt: (f) => { normConfig(f).gamma_initializer = {class_name: 'constructor', config: {}}; },
    memory: invalid('gammaInitializer', '{"className":"constructor"'),
    disk: invalid('gammaInitializer', '{"className":"constructor"'),
  });
  // Absurd values: each field takes 1e9, −1e9, NaN, a string and an object.
  const fields: Array<[string, string, Partial<Record<string, RegExp | 'loads'>>]> = [
    ['axis', 'axis', {'1e9': /invalid axis 1000000000; for input shape \[null, 4\]/}],
    // Any positive finite epsilon is a valid (if useless) config in Keras too; outputs stay finite.
    ['epsilon', 'epsilon', {'1e9': 'loads'}],
  ];
  if (kind !== 'GN') fields.push(['momentum', 'momentum', {}]);
  if (kind === 'BRN') fields.push(['renorm_momentum', 'renormMomentum', {}]);
  if (kind === 'GN') {
    fields.push(['groups', 'groups',
      {'1e9': /GroupNormalization 'norm': number of groups \(1000000000\) cannot be more than the number of channels \(4\)/}]);
  }
  const values: Array<[string, unknown, string]> = [
    ['1e9', 1e9, '1000000000'], ['-1e9', -1e9, '-1000000000'], ['NaN', NaN, 'NaN'], ['a string', 'x', '"x"'],
    ['an object', {a: 1}, '{"a":1}'],
  ];
  for (const [key, field, special] of fields) {
    for (const [label, value, shown] of values) {
      const expected = special[label] ?? invalid(field, shown);
      cases.push({
        name: `${key} = ${label}`, stage: 'config',
        corrupt: (f) => { normConfig(f)[key] = value; },
        memory: expected,
        // Python writes NaN as a bare word, which is not JSON.
        disk: label === 'NaN' ? notJson : expected,
      });
    }
  }
  cases.push({
    name: 'huge declared input shape', stage: 'config',
    corrupt: (f) => { normConfig(f).batch_input_shape = [null, 2 ** 26]; },
    memory: new RegExp(`${cls} 'norm': the channel axis -1 of input shape \\[null, 67108864\\] has 67108864 channels; ` +
        'at most 16777216 are supported'),
    disk: new RegExp(`${cls} 'norm': the channel axis -1 of input shape \\[null, 67108864\\] has 67108864 channels`),
  });
  return cases;
}

/**
 * When loading fails after tfjs built the model (a weight problem), tfjs-layers
 * neither returns nor disposes the model, nor the weights it decoded: at most
 * one tensor per declared weight and per model weight stays behind. A config
 * problem fails before anything is allocated. Checked exactly, so any other
 * leak (ours) fails the test.
 */
function leakBound(stage: Stage, f: Files, kind: Kind): number {
  return stage === 'config' ? 0 : specs(f).length + specs(base[kind]!).length;
}

function expectFinitePredictions(model: tfl.LayersModel): void {
  const y = tf.tidy(() => (model.predict(tf.ones([2, CHANNELS])) as tf.Tensor).dataSync());
  expect(Array.from(y).every(Number.isFinite)).toBe(true);
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');
const cleanPrototype = prototypeKeys();

function clone(f: Files): Files {
  return {modelJSON: JSON.parse(JSON.stringify(f.modelJSON)), weights: f.weights.slice()};
}

describe.each(['BN', 'BRN', 'GN'] as Kind[])('%s: hostile model files', (kind) => {
  it('the unmodified files load from memory and disk and predict finite values', async () => {
    for (const source of ['memory', 'disk'] as const) {
      const model = await load(source, clone(base[kind]!));
      expectFinitePredictions(model);
      model.dispose();
    }
  });

  for (const c of [...weightCases(kind), ...configCases(kind)]) {
    for (const source of ['memory', 'disk'] as const) {
      it(`${c.name} (${source})`, async () => {
        const f = clone(base[kind]!);
        c.corrupt(f);
        const tensors = tf.memory().numTensors;
        const arrayBuffers = process.memoryUsage().arrayBuffers;
        const expected = c[source];
        if (expected === 'loads') {
          const model = await load(source, f);
          expectFinitePredictions(model);
          model.dispose();
          expect(tf.memory().numTensors).toBe(tensors);
        } else {
          const error = await load(source, f).then(() => null, (e: unknown) => e);
          expect(error).toBeInstanceOf(Error);
          expect((error as Error).message).toMatch(expected);
          expect(tf.memory().numTensors - tensors).toBeLessThanOrEqual(leakBound(c.stage, f, kind));
        }
        // Nothing near the declared size was allocated (the huge cases declare 256 MiB to petabytes).
        expect(process.memoryUsage().arrayBuffers - arrayBuffers).toBeLessThan(32 * 2 ** 20);
        expect(prototypeKeys()).toBe(cleanPrototype);
        expect(({} as Json).polluted).toBeUndefined();
      }, 20000);
    }
  }
});
