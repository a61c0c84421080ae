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
 * shape [samples, channels]. Channels-last (b = 1) is average pooling, several
 * times faster than the product with ones on wasm (XNNPACK's pooling). A pool
 * sums its window in sequence, so it pools twice: runs of a1 rows (a1 the
 * divisor of a nearest √a from below), then their means; the float32 error is
 * then about that of the product's.
 */
export function meanPerSampleChannel(t: tf.Tensor, samples: number, a: number, channels: number, b: number): tf.Tensor2D {
  if (b === 1 && a > 1) {
    let a1 = Math.floor(Math.sqrt(a));
    while (a % a1 !== 0) a1--;
    const pool = (u: tf.Tensor, rows: number, window: number) =>
      tf.avgPool(tf.reshape(u, [rows, window, 1, channels]) as tf.Tensor4D, [window, 1], [window, 1], 'valid');
    const runs = a1 > 1 ? pool(t, samples * a / a1, a1) : t;
    return tf.reshape(pool(runs, samples, a / a1), [samples, channels]);
  }
  return tf.div(sumPerSampleChannel(t, samples, a, channels, b), a * b);
}

/**
 * `forward`, a reduction of a full-size tensor, as one recorded op whose
 * gradient is `backward` (given the tensors in `saved`). Recorded as tfjs ops,
 * a product with ones or a pooling would keep its full-size input alive until
 * the backward pass ends even when nothing differentiates the statistics; this
 * keeps only `saved`.
 */
export function recordedReduction(forward: (t: tf.Tensor) => tf.Tensor,
    backward: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor, saved: tf.Tensor[] = []): (t: tf.Tensor) => tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save(saved);
    return {value: forward(input), gradFunc: backward};
  }) as (t: tf.Tensor) => tf.Tensor;
}
