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

/**
 * Mean of `t`, viewed as [samples, a, channels, b], over its a and b axes:
 * shape [samples, channels]. Channels-last (b = 1) is an average pool whose
 * window is all a rows: one read, several times faster than the product with
 * ones on wasm (XNNPACK's pooling); its float32 sum is sequential, so about as
 * accurate as the product for the few thousand values of a group-norm group.
 */
export function meanPerSampleChannel(t: tf.Tensor, samples: number, a: number, channels: number, b: number): tf.Tensor2D {
  if (b === 1 && a > 1) {
    const pooled = tf.avgPool(tf.reshape(t, [samples, a, 1, channels]) as tf.Tensor4D, [a, 1], [a, 1], 'valid');
    return tf.reshape(pooled, [samples, channels]);
  }
  return tf.div(sumPerSampleChannel(t, samples, a, channels, b), a * b);
}
