/**
 * Kernel-level inputs and checks shared by the fused-kernel tests on cpu and
 * the composite-kernel tests on wasm: every kernel of the package,
 * channels-last and channels-first, ranks 2 to 5, with deterministic data.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationLayer} from '../../src';
import {
  BATCH_NORM_TRAINING, BATCH_NORM_TRAINING_GRAD, batchNormTraining, CHANNEL_SCALE_OFFSET,
} from '../../src/kernels/batch_norm';
import {GROUP_NORM, GROUP_NORM_GRAD, groupNorm} from '../../src/kernels/group_norm';
import {runKernel} from '../../src/kernels/registry';
import {channelMoments, randomData, ref} from './reference';
import {groupNormRef} from './variant_reference';

export interface KernelCase {
  label: string;
  kernel: string;
  shape: number[];
  /** Builds the inputs (inside the caller's tidy) for the kernel. */
  inputs: () => tf.NamedTensorMap;
  attrs: Record<string, number>;
}

/** [shape, non-negative channel axis]: last, first and middle axes, ranks 2-5. */
export const SHAPES: Array<[number[], number]> = [
  [[6, 5], 1],
  [[4, 3, 5], 2],
  [[4, 3, 5], 1],
  [[3, 4, 5, 6], 3],
  [[3, 6, 4, 5], 1],
  [[2, 3, 4, 2, 5], 4],
  [[2, 4, 3, 2, 3], 1],
  [[2, 3, 4, 2, 2], 2],
];

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);

/** A group count that divides the channels and is neither 1 nor C when possible. */
function groupsFor(channels: number): number {
  for (const g of [2, 3]) if (channels % g === 0 && g < channels) return g;
  return 1;
}

function tensor(shape: number[], seed: number, mean = 0, scale = 1): tf.Tensor {
  return tf.tensor(randomData(size(shape), seed, mean, scale), shape);
}

/** The forward and gradient kernels of every op for one shape, with inputs from `seed`. */
export function kernelCases(shape: number[], axis: number, seed: number): KernelCase[] {
  const c = shape[axis];
  const x = () => tensor(shape, seed, 2, 3);
  const dy = () => tensor(shape, seed + 1);
  const gamma = () => tensor([c], seed + 2, 1, 0.4);
  const beta = () => tensor([c], seed + 3);
  const bnAttrs = {axis, epsilon: 1e-3, rmin: 0, rmax: Infinity, dmax: Infinity};
  // Renorm statistics near the batch's (mean 2, stddev 3) so that r and d clip for some channels only.
  const renormAttrs = {axis, epsilon: 1e-3, rmin: 0.9, rmax: 1.1, dmax: 0.1};
  const renormIn = () => ({renormMean: tensor([c], seed + 4, 2, 0.3), renormStddev: tensor([c], seed + 5, 3, 0.5)});
  const bnGradIn = (withRenorm: boolean) => () => {
    const fwd = {x: x(), gamma: gamma(), ...(withRenorm ? renormIn() : {})};
    // The active backend's forward kernel: the fused one on cpu, the composite elsewhere.
    const [, mean, variance, r, d] = runKernel(BATCH_NORM_TRAINING, fwd, withRenorm ? renormAttrs : bnAttrs);
    return {dy: dy(), x: fwd.x, mean, variance, gamma: fwd.gamma, r, d};
  };
  const groups = groupsFor(c);
  const gnAttrs = {axis, groups, epsilon: 1e-3};
  const gnGradIn = (g = groups) => () => {
    const fwd = {x: x(), gamma: gamma()};
    const [, mean, variance] = runKernel(GROUP_NORM, fwd, {...gnAttrs, groups: g});
    return {dy: dy(), x: fwd.x, mean, variance, gamma: fwd.gamma};
  };
  const at = `[${shape}] axis ${axis}`;
  return [
    {label: `BN ${at}`, kernel: BATCH_NORM_TRAINING, shape, attrs: bnAttrs,
      inputs: () => ({x: x(), gamma: gamma(), beta: beta()})},
    {label: `BN without beta ${at}`, kernel: BATCH_NORM_TRAINING, shape, attrs: bnAttrs,
      inputs: () => ({x: x(), gamma: gamma()})},
    {label: `BN renorm ${at}`, kernel: BATCH_NORM_TRAINING, shape, attrs: renormAttrs,
      inputs: () => ({x: x(), gamma: gamma(), beta: beta(), ...renormIn()})},
    {label: `BN gradient ${at}`, kernel: BATCH_NORM_TRAINING_GRAD, shape, attrs: bnAttrs, inputs: bnGradIn(false)},
    {label: `BN renorm gradient ${at}`, kernel: BATCH_NORM_TRAINING_GRAD, shape, attrs: renormAttrs,
      inputs: bnGradIn(true)},
    {label: `scale-offset ${at}`, kernel: CHANNEL_SCALE_OFFSET, shape, attrs: {axis},
      inputs: () => ({x: x(), scale: gamma(), offset: beta()})},
    {label: `GN groups ${groups} ${at}`, kernel: GROUP_NORM, shape, attrs: gnAttrs,
      inputs: () => ({x: x(), gamma: gamma(), beta: beta()})},
    {label: `GN gradient groups ${groups} ${at}`, kernel: GROUP_NORM_GRAD, shape, attrs: gnAttrs, inputs: gnGradIn()},
    {label: `GN groups ${c} (instance norm) ${at}`, kernel: GROUP_NORM, shape, attrs: {...gnAttrs, groups: c},
      inputs: () => ({x: x(), gamma: gamma(), beta: beta()})},
    {label: `GN gradient groups ${c} (instance norm) ${at}`, kernel: GROUP_NORM_GRAD, shape,
      attrs: {...gnAttrs, groups: c}, inputs: gnGradIn(c)},
  ];
}

export const ALL_CASES: KernelCase[] = SHAPES.flatMap(([shape, axis], i) => kernelCases(shape, axis, 100 + 10 * i));

/** Runs `impl` on fresh inputs and returns every output's values; no tensor outlives the call. */
export function outputsOf(c: KernelCase, impl: (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) =>
    tf.Tensor | tf.Tensor[]): Float32Array[] {
  let values: Float32Array[] = [];
  tf.tidy(() => {
    const out = impl(c.inputs(), c.attrs as unknown as tf.NamedAttrMap);
    values = (Array.isArray(out) ? out : [out]).map((t) => t.dataSync() as Float32Array);
  });
  return values;
}

/** Layers trained step after step by the leak checks on every backend. */
export const LEAK_LAYERS: Array<[string, () => NormalizationLayer]> = [
  ['BatchNormLayer channels-first', () => new BatchNormLayer({axis: 1})],
  ['BatchRenormLayer', () => new BatchRenormLayer({renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}})],
  ['GroupNormLayer', () => new GroupNormLayer({groups: 2})],
];

/** 50 sgd steps plus inference calls leave the tensor count unchanged and the weights finite. */
export function expectNoLeaks(layer: NormalizationLayer): void {
  const shape = [4, 4, 3, 4];
  const x = tensor(shape, 97, 1, 2);
  const w = tensor(shape, 101);
  layer.apply(x);
  const optimizer = tf.train.sgd(0.01);
  const step = () => tf.tidy(() => {
    const {grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x, {training: true}) as tf.Tensor, w)) as tf.Scalar);
    optimizer.applyGradients(grads);
    (layer.apply(x) as tf.Tensor).dataSync();
  });
  step();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 50; i++) step();
  expect(tf.memory().numTensors).toBe(before);
  expect(layer.getWeights().every((t) => Array.from(t.dataSync()).every(Number.isFinite))).toBe(true);
  tf.dispose([x, w]);
  optimizer.dispose();
}

/** Inputs with mean 1e4 and unit variance, channels-last and channels-first. */
// Channels-last composites sum by pooling runs of about √rows (src/kernels/reduce.ts): 4096 rows,
// 2000 rows (runs of 40 and 50), and a prime 4099 (one run of all 4099).
export const OFFSET_SHAPES: Array<[number[], number]> = [
  [[64, 8, 8, 16], 3], [[64, 16, 8, 8], 1], [[2, 1000, 4], 2], [[1, 4099, 4], 2],
];

/** Batch and group statistics of mean-1e4, unit-variance data within 1e-3 relative of float64. */
export function expectAccurateStatistics(shape: number[], axis: number): void {
  const xData = randomData(size(shape), 89, 1e4, 1);
  const c = shape[axis];
  const expectRelative = (actual: ArrayLike<number>, expected: number[]) =>
    expected.forEach((v, k) => expect(Math.abs(actual[k] - v) / Math.abs(v)).toBeLessThan(1e-3));
  const m = channelMoments(ref(shape, xData), axis);
  const bn = batchNormTraining(tf.tensor(xData, shape), tf.ones([c]) as tf.Tensor1D, null, {axis, epsilon: 1e-3});
  expectRelative(bn.mean.dataSync(), m.mean);
  expectRelative(bn.variance.dataSync(), m.variance);
  const g = groupNormRef(ref(shape, xData), axis, 4, 1e-3);
  const gn = groupNorm(tf.tensor(xData, shape), null, null, {axis, groups: 4, epsilon: 1e-3});
  expectRelative(gn.mean.dataSync(), g.mean.flat());
  expectRelative(gn.variance.dataSync(), g.variance.flat());
  tf.dispose([bn.y, bn.mean, bn.variance, bn.r, bn.d, gn.y, gn.mean, gn.variance]);
}
