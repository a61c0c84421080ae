/**
 * Kernel registration for this package's ops.
 *
 * Each op is a tfjs kernel (`tf.engine().runKernel`) with a gradient registered
 * once for all backends (`tf.registerGradient`). A backend gets either a fused
 * kernel (the cpu backend: ./cpu) or the composite kernel: the same math as
 * tfjs ops, registered lazily for whichever backend is active (wasm, webgl,
 * webgpu, tensorflow, or any other), so every backend takes the hand-written
 * gradient rather than autodiff through tf.moments.
 */
import * as tf from '@tensorflow/tfjs-core';

export type OpKernelFunc = (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) => tf.Tensor | tf.Tensor[];

const composites = new Map<string, OpKernelFunc>();

/** Declares the composite implementation of a kernel, used where no other is registered. */
export function defineComposite(kernelName: string, impl: OpKernelFunc): void {
  composites.set(kernelName, impl);
}

/** The composite implementation, for tests that compare it with a fused kernel. */
export function compositeKernel(kernelName: string): OpKernelFunc {
  const impl = composites.get(kernelName);
  if (impl == null) throw new Error(`tfjs-normalization: no composite kernel named ${kernelName}`);
  return impl;
}

/** Runs a kernel on the active backend, registering the composite one if the backend has none. */
export function runKernel(kernelName: string, inputs: Record<string, tf.Tensor | null | undefined>,
    attrs: Record<string, unknown>): tf.Tensor[] {
  const backendName = tf.getBackend();
  if (tf.getKernel(kernelName, backendName) == null) {
    const impl = compositeKernel(kernelName);
    tf.registerKernel({
      kernelName,
      backendName,
      kernelFunc: ({inputs: ins, attrs: at}) => {
        const out = tf.tidy(() => impl(ins as tf.NamedTensorMap, at as tf.NamedAttrMap));
        return (Array.isArray(out) ? out : [out]) as unknown as tf.TensorInfo[];
      },
    });
  }
  const out = tf.engine().runKernel(kernelName, present(inputs), attrs as unknown as tf.NamedAttrMap);
  return Array.isArray(out) ? out as tf.Tensor[] : [out as tf.Tensor];
}

/** Runs the composite implementation directly, bypassing any fused kernel. */
export function runComposite(kernelName: string, inputs: Record<string, tf.Tensor | null | undefined>,
    attrs: Record<string, unknown>): tf.Tensor[] {
  const out = tf.tidy(() => compositeKernel(kernelName)(present(inputs), attrs as unknown as tf.NamedAttrMap));
  return Array.isArray(out) ? out : [out];
}

/** Optional inputs are passed as null; kernels see only the present ones. */
function present(inputs: Record<string, tf.Tensor | null | undefined>): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const key of Object.keys(inputs)) {
    const t = inputs[key];
    if (t != null) out[key] = t;
  }
  return out;
}
