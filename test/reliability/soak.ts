/**
 * Soak: one model with BatchNormLayer, BatchRenormLayer and GroupNormLayer
 * side by side, each directly on the input, trained for many steps with batch
 * sizes cycling through 1..64. Because the statistics layers see the raw
 * input, their population statistics are known analytically: every value of
 * channel c is drawn i.i.d. from a uniform distribution with mean MEAN[c] and
 * variance STD[c]² (randomData's unit-variance noise, scaled). Checks: no NaN, tf.memory().numTensors flat, and the moving
 * statistics at the end equal the population mean and variance.
 *
 * Used by `npm run soak` (soak_main.ts, 10,000 steps) and by the short
 * version in soak.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer} from 'tfjs-normalization';
import {randomData} from '../helpers/reference';

export const MEAN = [-3, 0.5, 2, 10];
export const STD = [0.5, 1, 2, 1.5];
const SIDE = 8;
const CHANNELS = MEAN.length;

export interface SoakOptions {
  steps: number;
  /** Momentum of the moving statistics: the EMA averages over about 1/(1 − momentum) steps. */
  momentum: number;
  /** Allowed |moving − population| / max(1, |population|). */
  tolerance: number;
  /** Called every `every` steps with progress. */
  log?: (line: string) => void;
  every?: number;
}

export interface SoakResult {
  steps: number;
  /** numTensors after the warm-up steps and at the end. */
  tensorsAfterWarmup: number;
  tensorsAtEnd: number;
  nonFiniteLosses: number;
  finalLoss: number;
  /** Worst relative error of the moving statistics against the population, per layer. */
  errors: Record<string, {mean: number; variance: number}>;
  /** Per-channel detail for the report. */
  table: Array<{layer: string; channel: number; mean: number; variance: number}>;
  failures: string[];
}

/** Batch size of step i: 37 is coprime to 64, so every size in 1..64 recurs every 64 steps. */
export const batchSizeAt = (step: number) => 1 + (step * 37) % 64;

/** A batch [b, 8, 8, 4] (channels last) and its regression target (the per-sample mean of channel 0). */
export function batchAt(step: number): {xs: tf.Tensor4D; ys: tf.Tensor2D} {
  const b = batchSizeAt(step);
  const data = randomData(b * SIDE * SIDE * CHANNELS, step + 1);
  for (let i = 0; i < data.length; i++) data[i] = MEAN[i % CHANNELS] + STD[i % CHANNELS] * data[i];
  const target = new Float32Array(b);
  const perSample = SIDE * SIDE * CHANNELS;
  for (let s = 0; s < b; s++) {
    for (let i = 0; i < perSample; i += CHANNELS) target[s] += data[s * perSample + i] / (SIDE * SIDE);
  }
  return {xs: tf.tensor4d(data, [b, SIDE, SIDE, CHANNELS]), ys: tf.tensor2d(target, [b, 1])};
}

export function buildSoakModel(momentum: number): {model: tfl.LayersModel; bn: BatchNormLayer; brn: BatchRenormLayer} {
  const input = tfl.input({shape: [SIDE, SIDE, CHANNELS]});
  // unbiasedVariance: the moving variance follows m/(m−1)·σ²_B, whose expectation is
  // the population variance for every batch size (the biased one would depend on m).
  const bn = new BatchNormLayer({name: 'bn', momentum, unbiasedVariance: true});
  const brn = new BatchRenormLayer({
    name: 'brn', momentum, unbiasedVariance: true, renormMomentum: 0.99, renormClipping: {rmin: 1 / 3, rmax: 3, dmax: 5},
  });
  const gn = new GroupNormLayer({name: 'gn', groups: 2});
  const merged = tfl.layers.concatenate().apply(
      [bn, brn, gn].map((layer) => layer.apply(input) as tfl.SymbolicTensor)) as tfl.SymbolicTensor;
  const pooled = tfl.layers.globalAveragePooling2d({}).apply(merged) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({units: 1, name: 'head'}).apply(pooled) as tfl.SymbolicTensor;
  const model = tfl.model({inputs: input, outputs: output});
  model.compile({optimizer: tf.train.sgd(0.01), loss: 'meanSquaredError'});
  return {model, bn, brn};
}

const relError = (got: number, want: number) => Math.abs(got - want) / Math.max(1, Math.abs(want));

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const {steps, momentum, tolerance, log, every = 1000} = options;
  const {model, bn, brn} = buildSoakModel(momentum);
  const warmup = Math.min(64, steps);
  let tensorsAfterWarmup = 0;
  let nonFiniteLosses = 0;
  let finalLoss = NaN;
  for (let step = 0; step < steps; step++) {
    if (step === warmup) tensorsAfterWarmup = tf.memory().numTensors;
    const {xs, ys} = batchAt(step);
    const loss = await model.trainOnBatch(xs, ys) as number;
    tf.dispose([xs, ys]);
    if (!Number.isFinite(loss)) nonFiniteLosses++;
    finalLoss = loss;
    if (log != null && (step + 1) % every === 0) {
      log(`step ${step + 1}/${steps}  batch ${batchSizeAt(step)}  loss ${loss.toFixed(5)}  numTensors ${tf.memory().numTensors}`);
    }
  }
  const tensorsAtEnd = tf.memory().numTensors;

  const table: SoakResult['table'] = [];
  const errors: SoakResult['errors'] = {};
  for (const layer of [bn, brn]) {
    const mean = Array.from(layer.movingMean.read().dataSync());
    const variance = Array.from(layer.movingVariance.read().dataSync());
    errors[layer.name] = {
      mean: Math.max(...mean.map((m, c) => relError(m, MEAN[c]))),
      variance: Math.max(...variance.map((v, c) => relError(v, STD[c] ** 2))),
    };
    mean.forEach((m, c) => table.push({layer: layer.name, channel: c, mean: m, variance: variance[c]}));
  }
  const failures: string[] = [];
  if (nonFiniteLosses > 0) failures.push(`${nonFiniteLosses} steps had a non-finite loss`);
  const weights = model.getWeights();
  if (!weights.every((w) => w.dataSync().every(Number.isFinite))) failures.push('a weight is not finite');
  if (tensorsAtEnd !== tensorsAfterWarmup) {
    failures.push(`numTensors grew from ${tensorsAfterWarmup} (step ${warmup}) to ${tensorsAtEnd}`);
  }
  for (const [name, e] of Object.entries(errors)) {
    if (!(e.mean <= tolerance)) failures.push(`${name} moving mean is off by ${e.mean.toExponential(2)} (> ${tolerance})`);
    if (!(e.variance <= tolerance)) {
      failures.push(`${name} moving variance is off by ${e.variance.toExponential(2)} (> ${tolerance})`);
    }
  }
  model.dispose();
  return {steps, tensorsAfterWarmup, tensorsAtEnd, nonFiniteLosses, finalLoss, errors, table, failures};
}
