/**
 * How this package's ops run on a backend.
 *
 * Each op has a kernel name. The cpu backend registers a fused kernel under it
 * (./cpu, `tf.registerKernel`), with its gradient registered once
 * (`tf.registerGradient`). On any backend without a registered kernel (wasm,
 * webgl, webgpu, node, …) the op runs its composite instead: the same math as
 * tfjs ops, whose output gets the hand-written backward through
 * `tf.customGrad`, and whose statistics are differentiable tfjs ops. Nothing
 * is registered at run time.
 */
import * as tf from '@tensorflow/tfjs-core';
import {runRegisteredKernel} from '../tfjs_internals';

/** A composite: the kernel's outputs from its inputs, as tfjs ops. */
export type CompositeFunc = (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => tf.Tensor[];

const composites = new Map<string, CompositeFunc>();

/** Declares the composite implementation of a kernel, run where no kernel is registered. */
export function defineComposite(kernelName: string, impl: CompositeFunc): void {
  composites.set(kernelName, impl);
}

/** The composite implementation (also for tests that compare it with a fused kernel). */
export function compositeKernel(kernelName: string): CompositeFunc {
  const impl = composites.get(kernelName);
  if (impl == null) throw new Error(`tfjs-normalization: no composite kernel named ${kernelName}`);
  return impl;
}

/** Runs the active backend's registered kernel, or the composite where it has none. */
export function runKernel(kernelName: string, inputs: Record<string, tf.Tensor | null | undefined>,
    attrs: Record<string, unknown>): tf.Tensor[] {
  return tf.getKernel(kernelName, tf.getBackend()) != null ?
    runRegisteredKernel(kernelName, present(inputs), attrs) : runComposite(kernelName, inputs, attrs);
}

/** Runs the composite implementation, whatever kernel the backend has. */
export function runComposite(kernelName: string, inputs: Record<string, tf.Tensor | null | undefined>,
    attrs: Record<string, unknown>): tf.Tensor[] {
  return tf.tidy(() => compositeKernel(kernelName)(present(inputs), attrs as unknown as tf.NamedAttrMap));
}

/** Optional inputs are passed as null; kernels see only the present ones. */
function present(inputs: Record<string, tf.Tensor | null | undefined>): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const [name, tensor] of Object.entries(inputs)) if (tensor != null) out[name] = tensor;
  return out;
}
