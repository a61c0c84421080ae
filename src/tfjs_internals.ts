/**
 * Every tfjs internal this package relies on, in one module.
 *
 * Checked against tfjs 4.22.0 (@tensorflow/tfjs-core, -layers and -backend-cpu).
 * tfjs's public API has no equivalent for these; test/tfjs_internals.test.ts
 * fails with a message naming the internal if a tfjs release changes one.
 *  - Running a registered kernel: `tf.engine().runKernel` (tfjs's own ops call
 *    it; the public `tf.registerKernel` has no public caller).
 *  - The cpu backend's storage: a tensor's values and a new output, as tfjs's
 *    own cpu kernels use them (`backend.data.get(dataId).values`,
 *    `backend.makeTensorInfo`), so the fused kernels need not import
 *    @tensorflow/tfjs-backend-cpu.
 *  - The serialization registry's class map (`SerializationMap.getMap()`), the
 *    table `tf.loadLayersModel` resolves class names with.
 *  - The base classes of initializers, regularizers and constraints, which
 *    tfjs-layers does not export (only factories).
 *  - A Layer's private `_addedWeightNames` and `_losses`, which a build that
 *    failed after adding weights must forget (no public API removes them).
 *  - Type-only imports from tfjs-layers' dist/ files.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

export type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
export type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
export type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
export type {Regularizer} from '@tensorflow/tfjs-layers/dist/regularizers';
export type {Constraint} from '@tensorflow/tfjs-layers/dist/constraints';

/** The tfjs release these internals were checked against. */
export const CHECKED_TFJS_VERSION = '4.22.0';

/** Runs the kernel registered under `kernelName` for the active backend (with its registered gradient when recording). */
export function runRegisteredKernel(kernelName: string, inputs: tf.NamedTensorMap, attrs: Record<string, unknown>):
    tf.Tensor[] {
  const out = tf.engine().runKernel(kernelName, inputs, attrs as unknown as tf.NamedAttrMap);
  return Array.isArray(out) ? out as tf.Tensor[] : [out as tf.Tensor];
}

/** The part of the cpu backend (MathBackendCPU) that kernels use. */
interface CpuBackendStorage {
  data: {get(dataId: object): {values: ArrayLike<number>}};
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
}

/** The values of a float32 tensor held by the cpu backend (no copy: do not write to them). */
export function readCpuValues(backend: unknown, tensor: tf.TensorInfo): Float32Array {
  return (backend as CpuBackendStorage).data.get(tensor.dataId).values as Float32Array;
}

/** A new float32 tensor on the cpu backend holding `values` (a Float32Array is taken as is, not copied). */
export function makeCpuOutput(backend: unknown, shape: number[], values: ArrayLike<number>): tf.TensorInfo {
  // The constructor copies typed arrays natively; Float32Array.from takes V8's slow generic path.
  const data = values instanceof Float32Array ? values : new Float32Array(values);
  return (backend as CpuBackendStorage).makeTensorInfo(shape, 'float32', data);
}

/** A registered class and its `fromConfig`, as the serialization registry holds them. */
export type RegisteredClass = [tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
  tf.serialization.FromConfigMethod<tf.serialization.Serializable>];

/** The registered class under `className`, or undefined. */
export function registeredClass(className: string): RegisteredClass | undefined {
  const classNameMap = tf.serialization.SerializationMap.getMap().classNameMap;
  return Object.prototype.hasOwnProperty.call(classNameMap, className) ?
    classNameMap[className] as RegisteredClass : undefined;
}

/**
 * The abstract base class of tfjs-layers' initializers, regularizers and
 * constraints, found from a known instance of each (tfjs-layers exports the
 * factories, not the bases).
 */
export const LAYERS_BASE_CLASSES: Readonly<Record<'initializer' | 'regularizer' | 'constraint', Function>> = {
  initializer: Object.getPrototypeOf(tfl.initializers.zeros().constructor),
  regularizer: Object.getPrototypeOf(tfl.regularizers.l1l2().constructor),
  constraint: Object.getPrototypeOf(tfl.constraints.nonNeg().constructor),
};

/**
 * Undoes `Layer.addWeight`'s private records for `weights`: it records each
 * weight's name in `_addedWeightNames` (and refuses the name again) and each
 * regularizer's loss in `_losses`. A build that failed after adding weights
 * calls this (after removing them from the public weight lists), so that a
 * retry can add them again.
 */
export function forgetAddedWeights(layer: tfl.layers.Layer, weights: tfl.LayerVariable[], lossesBefore: number): void {
  const records = layer as unknown as {_addedWeightNames: string[]; _losses: unknown[]};
  const names = weights.map((w) => w.originalName.slice(w.originalName.lastIndexOf('/') + 1));
  records._addedWeightNames = records._addedWeightNames.filter((name) => !names.includes(name));
  records._losses.splice(lossesBefore);
}
