/**
 * Sums for the composite kernels. The wasm and cpu backends reduce over a
 * non-innermost axis by transposing the whole tensor first (tens of ms for a
 * few million values); a product with a vector of ones reads the tensor once.
 * On wasm the large tensor must be the first operand: as the second it is
 * packed as a weight matrix first, which costs as much as the transpose.
 */
import * as tf from '@tensorflow/tfjs-core';

/**
 * Σ of `t`, viewed as [samples, a, channels, b], over its a and b axes:
 * shape [samples, channels]. Batch norm uses samples = 1, group norm samples = N.
 */
export function sumPerSampleChannel(t: tf.Tensor, samples: number, a: number, channels: number, b: number): tf.Tensor2D {
  let s = t;
  if (b > 1) s = tf.matMul(tf.reshape(s, [samples * a * channels, b]), tf.ones([b, 1]));
  if (a > 1 && samples === 1) {
    // The 2-D product skips the batched loop (about a fifth faster on wasm).
    s = tf.matMul(tf.reshape(s, [a, channels]), tf.ones([a, 1]), true);
  } else if (a > 1) {
    s = tf.matMul(tf.reshape(s, [samples, a, channels]), tf.ones([samples, a, 1]), true);
  }
  return tf.reshape(s, [samples, channels]);
}
