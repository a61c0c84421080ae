/**
 * The tfjs internals of src/tfjs_internals.ts, checked one by one against the
 * installed tfjs, so that a tfjs release that changes one fails here with a
 * message naming it rather than deep inside a layer or kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as fs from 'fs';
import * as path from 'path';
import type {Constraint, Initializer, Kwargs, LayerArgs, Regularizer} from '../src/tfjs_internals';
import {
  CHECKED_TFJS_VERSION, forgetAddedWeights, LAYERS_BASE_CLASSES, makeCpuOutput, readCpuValues, registeredClass, runRegisteredKernel,
} from '../src/tfjs_internals';

/** Fails with `message` (and the tfjs version) unless `ok`. */
function expectInternal(ok: boolean, message: string): void {
  if (!ok) {
    throw new Error(`tfjs internal changed (installed tfjs-core ${tf.version_core}, checked against ` +
        `${CHECKED_TFJS_VERSION}): ${message}. Update src/tfjs_internals.ts.`);
  }
}

describe(`tfjs internals used by the package (checked against tfjs ${CHECKED_TFJS_VERSION})`, () => {
  it('the installed tfjs packages are the checked version', () => {
    expectInternal(tf.version_core === CHECKED_TFJS_VERSION, `tfjs-core is ${tf.version_core}`);
    expectInternal(tfl.version_layers === CHECKED_TFJS_VERSION, `tfjs-layers is ${tfl.version_layers}`);
  });

  it('tf.engine().runKernel runs a registered kernel with its registered gradient', () => {
    expectInternal(typeof tf.engine().runKernel === 'function', 'tf.engine().runKernel is not a function');
    // Add, a tfjs kernel: y = a + b, dy/da = 1.
    const [sum] = runRegisteredKernel('Add', {a: tf.tensor1d([1, 2]), b: tf.tensor1d([10, 20])}, {});
    expectInternal(sum instanceof tf.Tensor, 'runKernel did not return a tf.Tensor');
    expect(Array.from(sum.dataSync())).toEqual([11, 22]);
    const grad = tf.grad((a: tf.Tensor) => tf.sum(runRegisteredKernel('Add', {a, b: tf.ones([2])}, {})[0]));
    expect(Array.from(grad(tf.tensor1d([3, 4])).dataSync())).toEqual([1, 1]);
  });

  it('the cpu backend stores float32 values under data.get(dataId).values and makes outputs with makeTensorInfo', () => {
    expect(tf.getBackend()).toBe('cpu');
    const backend = tf.backend() as unknown as Record<string, unknown>;
    expectInternal(typeof (backend.data as {get?: unknown})?.get === 'function', 'cpu backend has no data.get');
    expectInternal(typeof backend.makeTensorInfo === 'function', 'cpu backend has no makeTensorInfo');
    const x = tf.tensor1d([1.5, -2, 3]);
    const values = readCpuValues(backend, x);
    expectInternal(values instanceof Float32Array, 'data.get(dataId).values is not a Float32Array');
    expect(Array.from(values)).toEqual([1.5, -2, 3]);
    const info = makeCpuOutput(backend, [2], [7, 8]);
    const y = tf.engine().makeTensorFromTensorInfo(info);
    expect(y.shape).toEqual([2]);
    expect(Array.from(y.dataSync())).toEqual([7, 8]);
    tf.dispose([x, y]);
  });

  it('the serialization registry maps a class name to [class, fromConfig]', () => {
    const entry = registeredClass('Zeros');
    expectInternal(entry != null, "SerializationMap.getMap().classNameMap has no 'Zeros'");
    const [cls, fromConfig] = entry!;
    expectInternal(typeof cls === 'function' && typeof fromConfig === 'function', 'an entry is not [class, fromConfig]');
    expect(fromConfig(cls, {})).toBeInstanceOf(tfl.initializers.zeros().constructor);
    expect(registeredClass('toString')).toBeUndefined();
  });

  it('initializers, regularizers and constraints have the base classes the deep type imports name', () => {
    // Type-level: ts-jest type-checks this file, so it fails to compile if a dist/ type moves.
    const typed: [Initializer, Regularizer, Constraint] =
        [tfl.initializers.ones(), tfl.regularizers.l1(), tfl.constraints.maxNorm({maxValue: 2})];
    const args: LayerArgs = {name: 'n'};
    const kwargs: Kwargs = {training: true};
    expect([args.name, kwargs.training]).toEqual(['n', true]);
    typed.forEach((instance, i) => {
      const kind = (['initializer', 'regularizer', 'constraint'] as const)[i];
      expectInternal(instance instanceof LAYERS_BASE_CLASSES[kind], `a tf.${kind}s instance is not of the found base`);
    });
    const bases = LAYERS_BASE_CLASSES as Record<string, {name: string}>;
    expect([bases.initializer.name, bases.regularizer.name, bases.constraint.name])
        .toEqual(['Initializer', 'Regularizer', 'Constraint']);
    // Run-time: the declaration files behind the type-only imports exist and declare those names.
    const dist = path.dirname(require.resolve('@tensorflow/tfjs-layers/package.json')) + '/dist/';
    const declared: Array<[string, RegExp]> = [
      ['initializers.d.ts', /export declare abstract class Initializer\b/],
      ['regularizers.d.ts', /export declare abstract class Regularizer\b/],
      ['constraints.d.ts', /export declare abstract class Constraint\b/],
      ['engine/topology.d.ts', /export (declare )?interface LayerArgs\b/],
      ['types.d.ts', /export (declare )?type Kwargs\b/],
    ];
    for (const [file, pattern] of declared) {
      const text = fs.existsSync(dist + file) ? fs.readFileSync(dist + file, 'utf8') : '';
      expectInternal(pattern.test(text), `@tensorflow/tfjs-layers/dist/${file} does not match ${pattern}`);
    }
  });

  it("Layer.addWeight records names in _addedWeightNames and regularizer losses in _losses; forgetAddedWeights undoes both", () => {
    class Probe extends tfl.layers.Layer {
      static className = 'TfjsInternalsProbe';
      add(): tfl.LayerVariable {
        return this.addWeight('w', [2], 'float32', tfl.initializers.zeros(), tfl.regularizers.l2(), true);
      }
    }
    const layer = new Probe({name: 'probe'});
    const records = layer as unknown as {_addedWeightNames?: unknown; _losses?: unknown};
    expectInternal(Array.isArray(records._addedWeightNames), 'Layer has no _addedWeightNames list');
    expectInternal(Array.isArray(records._losses), 'Layer has no _losses list');
    const before = (records._losses as unknown[]).length;
    const weight = layer.add();
    expectInternal((records._addedWeightNames as string[]).includes('w'), 'addWeight did not record the name');
    expectInternal((records._losses as unknown[]).length === before + 1, 'addWeight did not record the loss');
    expect(() => layer.add()).toThrow(/Duplicate weight name/);
    layer.trainableWeights = [];
    forgetAddedWeights(layer, [weight], before);
    weight.dispose();
    expect((records._losses as unknown[]).length).toBe(before);
    const again = layer.add();
    expect(again.shape).toEqual([2]);
    again.dispose();
  });
});
