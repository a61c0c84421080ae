/**
 * Numerics of the batch statistics on hard inputs: a large offset (mean 1e4,
 * unit variance) and tiny variances (1e-6 and 1e-12), channels-last and
 * channels-first, on cpu (fused kernels) and wasm (composite kernels).
 *
 * Ours (BatchNormLayer) and tfjs's built-in BatchNormalization run one
 * training step with momentum 0, so their moving statistics are the batch
 * statistics; both are compared with a float64 reference computed from the
 * same float32 input values. The test prints both errors side by side and
 * holds ours within 1e-3:
 *   mean error     max over channels |μ − μ_ref| / σ_ref   (in units of the spread)
 *   variance error max over channels |σ² − σ²_ref| / σ²_ref
 *   output error   max |y − y_ref| (y is in normalized units)
 * The moving mean is stored in float32, so its error cannot go below the
 * rounding of μ_ref (one float32 ulp, up to |μ|·2⁻²³): with mean 1 and
 * spread 1e-6 that is 0.1σ for any implementation; the mean bound is
 * therefore 1e-3 or one ulp, whichever is larger.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer} from '../../src';
import {useBackend} from '../helpers/backends';
import {channelMoments, normalizeRef, randomData, ref} from '../helpers/reference';

const INPUTS = [
  {name: 'mean 1e4, variance 1', mean: 1e4, std: 1},
  {name: 'mean 1, variance 1e-6', mean: 1, std: 1e-3},
  {name: 'mean 1, variance 1e-12', mean: 1, std: 1e-6},
];
const LAYOUTS = [{name: 'NHWC', shape: [64, 8, 8, 4], axis: 3}, {name: 'NCHW', shape: [64, 4, 8, 8], axis: 1}];

interface Errors {
  mean: number;
  /** Every channel's |μ − μ_ref| <= max(1e-3·σ_ref, one float32 ulp of μ_ref). */
  meanWithinBound: boolean;
  variance: number;
  output: number;
}

function errorsOf(layer: tfl.layers.Layer, x: tf.Tensor, axis: number, epsilon: number): Errors {
  const xs = x.dataSync();
  const m = channelMoments(ref(x.shape, xs), axis);
  const yRef = normalizeRef(ref(x.shape, xs), axis, m.mean, m.variance, epsilon);
  const y = tf.tidy(() => (layer.apply(x, {training: true}) as tf.Tensor).dataSync());
  // Weight order for both layers: gamma, beta, moving_mean, moving_variance.
  const [mean, variance] = layer.getWeights().slice(2).map((w) => w.dataSync());
  const worst = (f: (c: number) => number) => Math.max(...m.mean.map((_, c) => f(c)));
  return {
    mean: worst((c) => Math.abs(mean[c] - m.mean[c]) / Math.sqrt(m.variance[c])),
    meanWithinBound: m.mean.every((v, c) =>
      Math.abs(mean[c] - v) <= Math.max(1e-3 * Math.sqrt(m.variance[c]), Math.abs(v) * 2 ** -23)),
    variance: worst((c) => Math.abs(variance[c] - m.variance[c]) / m.variance[c]),
    output: Array.from(y).reduce((e, v, i) => Math.max(e, Math.abs(v - yRef.data[i])), 0),
  };
}

const report: string[] = [];

describe.each(['cpu', 'wasm'])('batch statistics on hard inputs, %s backend', (backend) => {
  useBackend(backend);

  for (const input of INPUTS) {
    for (const layout of LAYOUTS) {
      it(`${input.name}, ${layout.name}: ours within 1e-3 of float64 (built-in reported)`, () => {
        const n = layout.shape.reduce((p, q) => p * q);
        const x = tf.tensor(randomData(n, 3, input.mean, input.std), layout.shape);
        // ε well below the variance, so the output depends on the variance estimate.
        const epsilon = 1e-3 * input.std ** 2;
        const ours = new BatchNormLayer({axis: layout.axis, momentum: 0, epsilon});
        const builtin = tfl.layers.batchNormalization({axis: layout.axis, momentum: 0, epsilon});
        const e = {ours: errorsOf(ours, x, layout.axis, epsilon), builtin: errorsOf(builtin, x, layout.axis, epsilon)};
        const fmt = (v: Errors) => [v.mean, v.variance, v.output].map((k) => k.toExponential(1).padStart(8)).join(' ');
        report.push(`${backend.padEnd(5)} ${`${input.name}, ${layout.name}`.padEnd(30)} ${fmt(e.ours)}   ${fmt(e.builtin)}`);
        tf.dispose(x);
        ours.dispose();
        builtin.dispose();
        expect(e.ours.meanWithinBound).toBe(true);
        expect(e.ours.variance).toBeLessThan(1e-3);
        expect(e.ours.output).toBeLessThan(1e-3);
      });
    }
  }
});

afterAll(() => {
  console.log(['Batch statistics against float64 (mean: |Δμ|/σ, variance: |Δσ²|/σ², output: max |Δy|)',
    `${'backend input'.padEnd(36)} ${'ours: mean variance output'.padEnd(27)}   built-in: mean variance output`,
    ...report].join('\n'));
});
