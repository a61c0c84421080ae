/**
 * Smoke tests of the runnable examples: each `main` with small settings, with
 * assertions on what it is meant to show (training works, save/load keeps
 * every weight bit for bit, the user-defined layer computes its formula and
 * round-trips, the low-level wrapper keeps correct moving averages).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {NormalizationConfigError, NormalizationShapeError} from 'tfjs-normalization';
import {main as extend, FilterResponseNorm} from '../../examples/extend';
import {main as meanOnly, MeanOnlyBatchNorm} from '../../examples/mean_only_batch_norm';
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

  it('rejects a config key it does not declare, naming it and the field it probably meant', () => {
    expect(() => new FilterResponseNorm({tluu: true} as never)).toThrow(/unknown config field 'tluu'; did you mean 'tlu'\?/);
  });

  it('the subclass trains and reloads as itself, with its config and identical predictions', async () => {
    const r = await noLeak(() => extend({epochs: 8, log: quiet}));
    expect(r.losses[r.losses.length - 1]).toBeLessThan(0.5 * r.losses[0]);
    expect(r.reloadedIsFrn).toBe(true);
    expect(r.reloadedConfig).toMatchObject({tlu: true, epsilon: 1e-6, axis: -1, center: true, scale: true});
    expect(bitsEqual(r.after, r.before)).toBe(true);
    expect(r.fold).toEqual({folded: [], kept: [{name: 'frn', reason:
        'Filter Response Normalization divides each sample by its own mean of x², which no kernel can absorb'}]});
  });
});

describe('examples/extend.ts build checks', () => {
  it('a rank-2 input fails before any weight exists, and the same layer then builds on rank 4', () => {
    const layer = new FilterResponseNorm({name: 'frn'});
    expect(() => layer.apply(tfl.input({shape: [3]}))).toThrow(NormalizationShapeError);
    expect(layer.weights).toEqual([]);
    layer.apply(tfl.input({shape: [4, 4, 3]}));
    expect(layer.weights.map((w) => w.originalName)).toEqual(['frn/gamma', 'frn/beta', 'frn/tau']);
    layer.dispose();
  });
});

describe('examples/mean_only_batch_norm.ts', () => {
  it('training: y = γ·(x − μ_B) + β and moving_mean ← m·moving_mean + (1 − m)·μ_B; inference uses moving_mean', () => {
    const shape = [4, 3, 5];  // channels-first: axis 1
    const xData = randomData(60, 31, 2, 1.5);
    const gamma = Array.from(randomData(3, 32, 1, 0.3));
    const beta = Array.from(randomData(3, 33, 0, 0.5));
    const start = Array.from(randomData(3, 34, 0, 1));
    const layer = new MeanOnlyBatchNorm({axis: 1, momentum: 0.7});
    layer.apply(tfl.input({shape: shape.slice(1)}));
    const initial = [gamma, beta, start].map((v) => tf.tensor1d(v));
    layer.setWeights(initial);
    const at = (n: number, c: number, p: number) => n * 15 + c * 5 + p;
    const batchMean = [0, 1, 2].map((c) => {
      let s = 0;
      for (let n = 0; n < 4; n++) for (let p = 0; p < 5; p++) s += xData[at(n, c, p)];
      return s / 20;
    });
    const expected = (mean: number[]) => {
      const out = new Float64Array(60);
      for (let n = 0; n < 4; n++) {
        for (let c = 0; c < 3; c++) {
          for (let p = 0; p < 5; p++) out[at(n, c, p)] = gamma[c] * (xData[at(n, c, p)] - mean[c]) + beta[c];
        }
      }
      return out;
    };
    const x = tf.tensor(xData, shape);
    const before = tf.memory().numTensors;
    const yTrain = tf.tidy(() => (layer.apply(x, {training: true}) as tf.Tensor).dataSync());
    expect(tf.memory().numTensors).toBe(before);
    expect(maxRelError(yTrain, expected(batchMean))).toBeLessThan(1e-5);
    const moved = start.map((v, c) => 0.7 * v + 0.3 * batchMean[c]);
    expect(maxRelError(layer.movingMean!.read().dataSync(), moved)).toBeLessThan(1e-5);
    const yInfer = tf.tidy(() => (layer.apply(x) as tf.Tensor).dataSync());
    expect(maxRelError(yInfer, expected(moved))).toBeLessThan(1e-5);
    tf.dispose([x, ...initial]);
    layer.dispose();
  });

  it('its own config field is checked with a typed error, and typos are caught', () => {
    expect(() => new MeanOnlyBatchNorm({momentum: 2})).toThrow(NormalizationConfigError);
    expect(() => new MeanOnlyBatchNorm({momentm: 0.9} as never)).toThrow(/did you mean 'momentum'\?/);
  });

  it('trains, reloads as itself bit for bit, and folds into the Dense before it (float64 reference)', async () => {
    const r = await noLeak(() => meanOnly({epochs: 10, log: quiet}));
    expect(r.losses[r.losses.length - 1]).toBeLessThan(0.5 * r.losses[0]);
    expect(r.reloadedIsMeanOnly).toBe(true);
    expect(r.reloadedConfig).toMatchObject({momentum: 0.8, epsilon: 1e-3, axis: -1, center: true, scale: true});
    expect(bitsEqual(r.after, r.before)).toBe(true);
    // The moving mean left its initial zeros, so keeping it is not trivial.
    expect(r.weights['mean_bn/moving_mean'].some((v) => Math.abs(v) > 0.1)).toBe(true);

    expect(r.folded).toEqual(['mean_bn']);
    expect(r.foldedLayers).toEqual(['features', 'mean_bn']);
    expect(r.foldedOutputNames).toEqual(['mean_bn']);
    // y = γ·(x·W + b − moving_mean) + β in float64, from the trained weights.
    const W = r.weights['dense/kernel'];
    const b = r.weights['dense/bias'];
    const [gamma, beta, mean] = ['gamma', 'beta', 'moving_mean'].map((n) => r.weights[`mean_bn/${n}`]);
    const expected = new Float64Array(64 * 4);
    for (let n = 0; n < 64; n++) {
      for (let c = 0; c < 4; c++) {
        const z = r.x[n * 2] * W[c] + r.x[n * 2 + 1] * W[4 + c] + b[c];
        expected[n * 4 + c] = gamma[c] * (z - mean[c]) + beta[c];
      }
    }
    expect(maxRelError(r.before, expected)).toBeLessThan(1e-5);
    expect(maxRelError(r.foldedPredictions, expected)).toBeLessThan(1e-5);
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
