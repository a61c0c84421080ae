/**
 * Hostile and broken model files, loaded with tf.loadLayersModel through
 * tfjs's own in-memory loader (tf.io.fromMemory), through `checked` around it,
 * and from disk (the package's fileSystem handler).
 *
 * Each case starts from a valid saved model (the normalization layer first,
 * so a bad config fails before any other layer allocates) and corrupts one
 * thing. Every case must end in a clear Error, quickly, without allocating
 * the declared size and without touching Object.prototype. Config cases leave
 * no tensor behind on any path. Weight cases run here through plain
 * tf.io.fromMemory, where tfjs-layers keeps what it built (see `leakBound`),
 * and where only tfjs checks the weights: it rejects a wrong count, shape or
 * size, but loads NaN, infinities and negative variances as they are (the
 * layers check `setWeights`, not tfjs's direct writes). test/io/validate.test.ts
 * runs the same cases through `checked` and fileSystem, which refuse every one
 * and leave nothing.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  CLASS, clone, esc, expectCleanPrototype, expectFinitePredictions, Files, Json, Kind, KINDS, layers, load, normConfig,
  Source, specs, topology, useBaseModels, weightCases,
} from '../helpers/model_files';

const models = useBaseModels('hostile-');

/** Sets an own property, even `__proto__`, as JSON.parse would. */
function setOwn(obj: Json, key: string, value: unknown): void {
  Object.defineProperty(obj, key, {value, enumerable: true, writable: true, configurable: true});
}

interface Case {
  name: string;
  corrupt: (f: Files) => void;
  /** The error, per source ('checked' is 'memory''s unless given); 'loads' for values that are valid however odd. */
  memory: RegExp | 'loads';
  checked?: RegExp | 'loads';
  disk: RegExp | 'loads';
}

function configCases(kind: Kind): Case[] {
  const cls = CLASS[kind];
  const invalid = (field: string, shown: string) => new RegExp(`${cls} 'norm': invalid ${field} ${esc(shown)}`);
  const notJson = /fileSystem: .*model\.json is not valid JSON/;
  const cases: Case[] = [];
  // Keys that name the prototype chain, in our layer's config.
  for (const [key, shownAs] of [['__proto__', 'Proto'], ['constructor', 'constructor'], ['prototype', 'prototype']]) {
    cases.push({
      name: `config key ${key}`,
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
      name: `__proto__ and constructor keys in ${where}`, memory: 'loads', disk: 'loads',
      corrupt: (f) => { setOwn(target(f), '__proto__', pollute); setOwn(target(f), 'constructor', pollute); },
    });
  }
  for (const [className, shownAs] of [['constructor', 'constructor'], ['__proto__', 'Proto'], ['toString', 'toString']]) {
    cases.push({
      name: `layer class_name ${className}`,
      corrupt: (f) => { layers(f)[0].class_name = className; },
      memory: new RegExp(`Unknown layer: ${shownAs}\\.`), disk: new RegExp(`Unknown layer: ${shownAs}\\.`),
    });
  }
  cases.push({
    name: 'initializer class_name constructor',
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
        name: `${key} = ${label}`,
        corrupt: (f) => { normConfig(f)[key] = value; },
        memory: expected,
        // Python writes NaN as a bare word, which is not JSON.
        disk: label === 'NaN' ? notJson : expected,
      });
    }
  }
  const validated = new RegExp(`${cls} 'norm': weight 'gamma' must have shape \\[67108864\\]; received \\[4\\]`);
  cases.push({
    name: 'huge declared input shape',
    corrupt: (f) => { normConfig(f).batch_input_shape = [null, 2 ** 26]; },
    memory: new RegExp(`${cls} 'norm': the channel axis -1 of input shape \\[null, 67108864\\] has 67108864 channels; ` +
        'at most 16777216 are supported'),
    // Validation compares the weights with the declared input shape before the layer is built.
    checked: validated, disk: validated,
  });
  return cases;
}

/**
 * When loading through plain tf.io.fromMemory fails after tfjs built the model
 * (a weight problem), tfjs-layers neither returns nor disposes the model, nor
 * the weights it decoded: at most one tensor per declared weight and per model
 * weight stays behind. Checked as a bound, so a leak of ours on top fails.
 */
function leakBound(f: Files, kind: Kind): number {
  return specs(f).length + specs(models.base[kind]).length;
}

/** Runs a corrupted file through a source; `leak` is how many tensors a failure may leave. */
async function expectOutcome(f: Files, source: Source, expected: RegExp | 'loads', leak: number): Promise<void> {
  const tensors = tf.memory().numTensors;
  const arrayBuffers = process.memoryUsage().arrayBuffers;
  if (expected === 'loads') {
    const model = await load(source, f, models.scratch);
    expectFinitePredictions(model);
    model.dispose();
    expect(tf.memory().numTensors).toBe(tensors);
  } else {
    const error = await load(source, f, models.scratch).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(expected);
    if (leak === 0) {
      expect(tf.memory().numTensors).toBe(tensors);
    } else {
      expect(tf.memory().numTensors - tensors).toBeLessThanOrEqual(leak);
    }
  }
  // Nothing near the declared size was allocated (the huge cases declare 256 MiB to petabytes).
  expect(process.memoryUsage().arrayBuffers - arrayBuffers).toBeLessThan(32 * 2 ** 20);
  expectCleanPrototype();
}

describe.each(KINDS)('%s: hostile model files', (kind) => {
  it('the unmodified files load from every source and predict finite values', async () => {
    for (const source of ['memory', 'checked', 'disk'] as const) {
      const model = await load(source, clone(models.base[kind]), models.scratch);
      expectFinitePredictions(model);
      model.dispose();
    }
  });

  for (const c of weightCases(kind)) {
    const memory = c.memory;
    if (memory instanceof RegExp) {
      it(`${c.name} (memory: tfjs's own error, bounded leak)`, async () => {
        const f = clone(models.base[kind]);
        c.corrupt(f);
        await expectOutcome(f, 'memory', memory, leakBound(f, kind));
      }, 20000);
    } else {
      it(`${c.name} (memory: tfjs loads the value unchecked)`, async () => {
        const f = clone(models.base[kind]);
        c.corrupt(f);
        const tensors = tf.memory().numTensors;
        const model = await load('memory', f, models.scratch);
        const weight = model.getLayer('norm').weights.find((w) => w.originalName === `norm/${memory.loads}`)!;
        expect(Array.from(weight.read().dataSync())).toEqual(memory.values);
        model.dispose();
        expect(tf.memory().numTensors).toBe(tensors);
        expectCleanPrototype();
      }, 20000);
    }
  }

  for (const c of configCases(kind)) {
    for (const source of ['memory', 'checked', 'disk'] as const) {
      it(`${c.name} (${source})`, async () => {
        const f = clone(models.base[kind]);
        c.corrupt(f);
        // A config problem fails before anything is allocated, on every path.
        await expectOutcome(f, source, c[source] ?? c.memory, 0);
      }, 20000);
    }
  }
});
