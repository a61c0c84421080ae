/**
 * The statistics outputs carry their true gradients (issue 13, item 3): the
 * batch mean and variance against tf.moments' gradients and float64 finite
 * differences; Batch Renormalization's r and d (with some channels clipped)
 * against finite differences with respect to x, μ_R and σ_R; group norm's
 * per-(sample, group) statistics against finite differences. On cpu (folded
 * into the fused backward) and wasm (composites, autodiff). y's own gradient
 * keeps r and d constant (test/kernels/fused_cpu.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {batchNormTraining, groupNormOp} from '../../src';
import {useBackend} from '../helpers/backends';
import {channelMoments, maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {centralDifferences, groupNormRef, weightedSum} from '../helpers/variant_reference';

const EPS = 1e-3;
const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const otherAxes = (rank: number, axis: number) => [...Array(rank).keys()].filter((a) => a !== axis);
const values = (t: tf.Tensor) => Array.from(t.dataSync());

const CASES: Array<[number[], number]> = [[[6, 5], 1], [[2, 4, 3, 5], 3], [[3, 4, 2, 3], 1]];

for (const backend of ['cpu', 'wasm']) {
  describe(`gradients of the statistics outputs on ${backend}`, () => {
    useBackend(backend);

    for (const [shape, axis] of CASES) {
      const c = shape[axis];
      const xData = Array.from(randomData(size(shape), 31, 0.5, 1.5));
      const w = Array.from(randomData(c, 37));
      const xT = () => tf.tensor(xData, shape);
      const at = `[${shape}] axis ${axis}`;

      it(`batch norm mean and variance: tf.grad matches tf.moments and finite differences, ${at}`, () => {
        for (const statistic of ['mean', 'variance'] as const) {
          const ours = tf.tidy(() => values(tf.grad((x: tf.Tensor) =>
            tf.sum(tf.mul(batchNormTraining(x, null, null, {axis, epsilon: EPS})[statistic], w)))(xT())));
          const builtin = tf.tidy(() => values(tf.grad((x: tf.Tensor) =>
            tf.sum(tf.mul(tf.moments(x, otherAxes(shape.length, axis))[statistic], w)))(xT())));
          const differences = centralDifferences((v) => weightedSum(channelMoments(ref(shape, v), axis)[statistic], w),
              xData);
          expect(maxRelError(ours, builtin)).toBeLessThan(1e-5);
          expect(maxRelError(ours, differences)).toBeLessThan(1e-4);
        }
      });

      it(`batch norm y, mean and variance used together, ${at}`, () => {
        const wy = Array.from(randomData(size(shape), 41));
        const wv = Array.from(randomData(c, 43));
        const gamma = Array.from(randomData(c, 47, 1, 0.3));
        const ours = tf.tidy(() => values(tf.grad((x: tf.Tensor) => {
          const out = batchNormTraining(x, tf.tensor1d(gamma), null, {axis, epsilon: EPS});
          return tf.addN([tf.sum(tf.mul(out.y, tf.tensor(wy, shape))), tf.sum(tf.mul(out.mean, w)),
            tf.sum(tf.mul(out.variance, wv))]);
        })(xT())));
        const differences = centralDifferences((v) => {
          const m = channelMoments(ref(shape, v), axis);
          const y = normalizeRef(ref(shape, v), axis, m.mean, m.variance, EPS, gamma).data;
          return weightedSum(y, wy) + weightedSum(m.mean, w) + weightedSum(m.variance, wv);
        }, xData);
        expect(maxRelError(ours, differences)).toBeLessThan(1e-4);
      });

      it(`batch renorm r and d (some channels clipped) with respect to x, renorm mean and stddev, ${at}`, () => {
        const [rmin, rmax, dmax] = [0.9, 1.1, 0.3];
        // Renorm statistics placed so that r = 1/rFactor and d = dTarget before clipping.
        const batch = channelMoments(ref(shape, xData), axis);
        const rFactor = [0.7, 1.02, 1.3, 0.97, 1.25];
        const dTarget = [0.5, 0.1, -0.6, -0.15, 0.05];
        const renormStddev = batch.variance.map((v, k) => Math.sqrt(v + EPS) * rFactor[k % 5]);
        const renormMean = batch.mean.map((v, k) => v - renormStddev[k] * dTarget[k % 5]);
        const wd = Array.from(randomData(c, 61));
        const clip = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
        const loss = (xs: number[], mu: number[], sd: number[]) => {
          const m = channelMoments(ref(shape, xs), axis);
          const s = sd.map((v) => Math.max(v, Math.sqrt(EPS)));
          const r = m.variance.map((v, k) => clip(Math.sqrt(v + EPS) / s[k], rmin, rmax));
          const d = m.mean.map((v, k) => clip((v - mu[k]) / s[k], -dmax, dmax));
          return weightedSum(r, w) + weightedSum(d, wd);
        };
        const m = channelMoments(ref(shape, xData), axis);
        const rawR = m.variance.map((v, k) => Math.sqrt(v + EPS) / renormStddev[k]);
        const rawD = m.mean.map((v, k) => (v - renormMean[k]) / renormStddev[k]);
        // Both clipped and unclipped channels, none near a limit (finite differences need a margin).
        const clipped = (raw: number, lo: number, hi: number) => raw < lo || raw > hi;
        expect(rawR.some((v) => clipped(v, rmin, rmax)) && rawR.some((v) => !clipped(v, rmin, rmax))).toBe(true);
        expect(rawD.some((v) => clipped(v, -dmax, dmax)) && rawD.some((v) => !clipped(v, -dmax, dmax))).toBe(true);
        const margin = (raw: number[], lo: number, hi: number) => Math.min(...raw.map((v) => Math.min(Math.abs(v - lo),
            Math.abs(v - hi))));
        expect(margin(rawR, rmin, rmax)).toBeGreaterThan(1e-3);
        expect(margin(rawD, -dmax, dmax)).toBeGreaterThan(1e-3);
        const ours = tf.tidy(() => tf.grads((x: tf.Tensor, mu: tf.Tensor, sd: tf.Tensor) => {
          const out = batchNormTraining(x, null, null,
              {axis, epsilon: EPS, renorm: {mean: mu as tf.Tensor1D, stddev: sd as tf.Tensor1D, rmin, rmax, dmax}});
          return tf.add(tf.sum(tf.mul(out.r, w)), tf.sum(tf.mul(out.d, wd)));
        })([xT(), tf.tensor1d(renormMean), tf.tensor1d(renormStddev)]).map(values));
        const expected = [
          centralDifferences((v) => loss(v, renormMean, renormStddev), xData),
          centralDifferences((v) => loss(xData, v, renormStddev), renormMean),
          centralDifferences((v) => loss(xData, renormMean, v), renormStddev),
        ];
        ours.forEach((grad, i) => expect(maxRelError(grad, expected[i])).toBeLessThan(1e-4));
      });

      const groups = c % 2 === 0 ? 2 : c;
      it(`group norm mean and variance [N, G] (${groups} groups), ${at}`, () => {
        const n = shape[0];
        const wg = Array.from(randomData(n * groups, 67));
        for (const statistic of ['mean', 'variance'] as const) {
          const ours = tf.tidy(() => values(tf.grad((x: tf.Tensor) =>
            tf.sum(tf.mul(groupNormOp(x, null, null, {axis, groups, epsilon: EPS})[statistic], tf.tensor(wg, [n, groups]))))(
              xT())));
          const differences = centralDifferences(
              (v) => weightedSum(groupNormRef(ref(shape, v), axis, groups, EPS)[statistic].flat(), wg), xData);
          expect(maxRelError(ours, differences)).toBeLessThan(1e-4);
        }
      });
    }

    it('no tensor leaks from gradients through the statistics', () => {
      const x = tf.tensor(randomData(48, 71), [4, 3, 4]);
      const renorm = {mean: tf.zeros([4]) as tf.Tensor1D, stddev: tf.ones([4]) as tf.Tensor1D, rmin: 0.5, rmax: 2, dmax: 1};
      const step = () => tf.tidy(() => {
        tf.grads((xi: tf.Tensor, g: tf.Tensor) => {
          const bn = batchNormTraining(xi, g as tf.Tensor1D, null, {axis: -1, epsilon: EPS, renorm});
          const gn = groupNormOp(xi, g as tf.Tensor1D, null, {axis: -1, groups: 2, epsilon: EPS});
          return tf.addN([tf.sum(bn.y), tf.sum(bn.mean), tf.sum(bn.variance), tf.sum(bn.r), tf.sum(bn.d),
            tf.sum(tf.square(gn.y)), tf.sum(gn.mean), tf.sum(gn.variance)]);
        })([x, tf.ones([4])]);
      });
      step();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 20; i++) step();
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, renorm.mean, renorm.stddev]);
    });
  });
}
