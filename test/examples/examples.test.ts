/**
 * Smoke tests of the runnable examples: each `main` with small settings, with
 * assertions on what it is meant to show (training works, save/load keeps
 * every weight bit for bit, the user-defined layer computes its formula and
 * round-trips, the low-level wrapper keeps correct moving averages).
 */
import * as tf from '@tensorflow/tfjs-core';
import {main as extend, FilterResponseNorm} from '../../examples/extend';
import {BatchNormWrapper, main as lowLevel} from '../../examples/low_level';
import {main as saveLoad} from '../../examples/save_load';
import {main as sequential} from '../../examples/sequential';
import {channelMoments, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';

const quiet = () => undefined;

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

/** Runs `fn` and checks that it leaves no tensor behind. */
async function noLeak<T>(fn: () => Promise<T>): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  expect(tf.memory().numTensors).toBe(before);
  return result;
}

describe('examples/sequential.ts', () => {
  it('fit lowers the loss and the model classifies held-out points in inference mode', async () => {
    const r = await noLeak(() => sequential({epochs: 6, log: quiet}));
    expect(r.losses).toHaveLength(6);
    expect(r.losses[5]).toBeLessThan(0.5 * r.losses[0]);
    expect(r.testAccuracy).toBeGreaterThan(0.85); // chance is 1/3
  });
});

describe('examples/save_load.ts', () => {
  it('keeps every weight, moving statistics included, and every prediction bit for bit', async () => {
    const r = await noLeak(() => saveLoad({steps: 10, log: quiet}));
    expect(r.files).toEqual(['model.json', 'weights.bin']);
    const names = Object.keys(r.saved);
    for (const stat of ['batch_norm/moving_mean', 'batch_norm/moving_variance', 'batch_renorm/moving_mean',
      'batch_renorm/moving_stddev', 'batch_renorm/renorm_mean', 'batch_renorm/renorm_stddev']) {
      expect(names).toContain(stat);
    }
    expect(Object.keys(r.loaded).sort()).toEqual([...names].sort());
    for (const name of names) expect(bitsEqual(r.loaded[name], r.saved[name])).toBe(true);
    // Training moved the statistics off their initial values, so keeping them is not trivial.
    expect(r.saved['batch_norm/moving_mean'].some((v) => Math.abs(v) > 1e-3)).toBe(true);
    expect(r.saved['batch_norm/moving_variance'].some((v) => Math.abs(v - 1) > 1e-3)).toBe(true);
    expect(bitsEqual(r.after, r.before)).toBe(true);
  });
});

describe('examples/extend.ts', () => {
  it('FilterResponseNorm computes max(γ·x/√(mean x² + ε) + β, τ) per sample and channel', () => {
    const shape = [2, 3, 4, 5];
    const xData = randomData(120, 3, 0.5, 2);
    const gamma = Array.from(randomData(5, 4, 1, 0.3));
    const beta = Array.from(randomData(5, 5, 0, 0.5));
    const tau = Array.from(randomData(5, 6, 0, 0.5));
    const layer = new FilterResponseNorm({epsilon: 1e-4});
    layer.apply(tf.zeros(shape));
    layer.gamma!.write(tf.tensor1d(gamma));
    layer.beta!.write(tf.tensor1d(beta));
    layer.tau!.write(tf.tensor1d(tau));
    const y = (layer.apply(tf.tensor(xData, shape)) as tf.Tensor).dataSync();
    const expected = new Float64Array(120);
    for (let n = 0; n < 2; n++) {
      for (let c = 0; c < 5; c++) {
        let nu2 = 0;
        for (let p = 0; p < 12; p++) nu2 += xData[n * 60 + p * 5 + c] ** 2 / 12;
        for (let p = 0; p < 12; p++) {
          const i = n * 60 + p * 5 + c;
          expected[i] = Math.max(gamma[c] * xData[i] / Math.sqrt(nu2 + 1e-4) + beta[c], tau[c]);
        }
      }
    }
    expect(maxRelError(y, expected)).toBeLessThan(1e-5);
    layer.dispose();
  });

  it('rejects a config key it does not declare, naming it', () => {
    expect(() => new FilterResponseNorm({tluu: true} as never)).toThrow(/unknown config field 'tluu'/);
  });

  it('the subclass trains and reloads as itself, with its config and identical predictions', async () => {
    const r = await noLeak(() => extend({epochs: 8, log: quiet}));
    expect(r.losses[r.losses.length - 1]).toBeLessThan(0.5 * r.losses[0]);
    expect(r.reloadedIsFrn).toBe(true);
    expect(r.reloadedConfig).toMatchObject({tlu: true, epsilon: 1e-6, axis: -1, center: true, scale: true});
    expect(bitsEqual(r.after, r.before)).toBe(true);
  });
});

describe('examples/low_level.ts', () => {
  for (const op of ['tf.batchNorm', 'package'] as const) {
    it(`BatchNormWrapper (${op}): one training step and inference against float64`, () => {
      const shape = [6, 2, 3];
      const xData = randomData(36, 9, 2, 3);
      const w = new BatchNormWrapper(3, op);
      const x = tf.tensor(xData, shape);
      const m = channelMoments(ref(shape, xData), 2);
      const y = tf.tidy(() => w.apply(x, true).dataSync());
      expect(maxRelError(y, normalizeRef(ref(shape, xData), 2, m.mean, m.variance, 1e-5).data)).toBeLessThan(1e-5);
      const mm = m.mean.map((v) => 0.01 * v);
      const mv = m.variance.map((v) => 0.99 + 0.01 * v);
      expect(maxRelError(w.movingMean.dataSync(), mm)).toBeLessThan(1e-5);
      expect(maxRelError(w.movingVariance.dataSync(), mv)).toBeLessThan(1e-5);
      const yi = tf.tidy(() => w.apply(x, false).dataSync());
      expect(maxRelError(yi, normalizeRef(ref(shape, xData), 2, mm, mv, 1e-5).data)).toBeLessThan(1e-5);
      x.dispose();
      w.dispose();
    });
  }

  it('the training loop learns with either op, and both ops give the same run', async () => {
    const a = await noLeak(() => lowLevel({op: 'tf.batchNorm', steps: 60, log: quiet}));
    const b = await noLeak(() => lowLevel({op: 'package', steps: 60, log: quiet}));
    const avg = (v: number[]) => v.reduce((p, q) => p + q, 0) / v.length;
    expect(avg(a.losses.slice(-10))).toBeLessThan(0.7 * avg(a.losses.slice(0, 10)));
    expect(a.testAccuracy).toBeGreaterThan(0.7); // chance is 1/2
    expect(maxRelError(b.losses, a.losses)).toBeLessThan(1e-3);
    expect(maxRelError(b.movingMean, a.movingMean)).toBeLessThan(1e-3);
    expect(maxRelError(b.movingVariance, a.movingVariance)).toBeLessThan(1e-3);
    // The moving statistics track the hidden features (mean far from the initial 0).
    expect(Math.max(...Array.from(a.movingMean, Math.abs))).toBeGreaterThan(1);
  });
});
