/**
 * The public ops check their inputs (issue 13, item 3): each bad input fails
 * with a NormalizationShapeError naming the op, the argument and the shapes,
 * before anything is allocated; a negative axis resolves. On cpu (fused
 * kernels) and wasm (composites), which failed differently before (zeros,
 * a reshape error, NaN in the last channel).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {
  batchNormInference, batchNormTraining, channelScaleOffset, foldScaleOffset, ghostBatchNormTraining, groupNormOp,
  NormalizationConfigError, NormalizationShapeError,
} from '../../src';
import {resolveAxis} from '../../src/kernels/view';
import {useBackend} from '../helpers/backends';
import {randomData} from '../helpers/reference';

const SHAPE = [4, 3, 6];
const C = 6;
const x = () => tf.tensor(randomData(72, 5, 1, 2), SHAPE);
const vec = (n: number, seed = 7) => tf.tensor1d(randomData(n, seed, 1, 0.2));

type Call = () => unknown;
interface BadCase {
  label: string;
  /** Makes the inputs and returns the call on them. */
  make: () => Call;
  op: string;
  argument: string;
  message: RegExp;
}

function badCases(): BadCase[] {
  const bnTraining = (input: tf.Tensor, axis = -1, gamma: tf.Tensor1D | null = vec(C), beta: tf.Tensor1D | null = vec(C),
      renorm?: {mean: tf.Tensor1D; stddev: tf.Tensor1D}) =>
    () => batchNormTraining(input, gamma, beta,
        {axis, epsilon: 1e-3, renorm: renorm && {...renorm, rmin: 0.5, rmax: 2, dmax: 1}});
  const inference = (mean: tf.Tensor1D, variance: tf.Tensor1D, gamma: tf.Tensor1D | null = null) => {
    const input = x();
    return () => batchNormInference(input, mean, variance, gamma, null, -1, 1e-3);
  };
  const scaleOffset = (input: tf.Tensor, scale: tf.Tensor1D, offset: tf.Tensor1D, axis: number) =>
    () => channelScaleOffset(input, scale, offset, axis);
  const gn = (input: tf.Tensor, axis = -1, gamma: tf.Tensor1D | null = null, beta: tf.Tensor1D | null = null) =>
    () => groupNormOp(input, gamma, beta, {axis, groups: 3, epsilon: 1e-3});
  const shapeOf = (op: string, arg: string, expected: number, received: string) => new RegExp(
      `^${op}: ${arg} must have shape \\[${expected}\\]; received \\[${received}\\] \\(x of shape \\[4, 3, 6\\] ` +
      `has ${expected} channels on axis 2\\)`);
  const axisMessage = (op: string, axis: number, shape: string) =>
    new RegExp(`^${op}: axis ${axis} must name a non-batch axis of an input of rank >= 2; received shape \\[${shape}\\]`);
  const cases: BadCase[] = [];
  for (const op of ['batchNormTraining', 'channelScaleOffset', 'batchNormInference', 'groupNorm']) {
    const run = (input: tf.Tensor, axis: number): Call =>
      op === 'batchNormTraining' ? bnTraining(input, axis) :
      op === 'channelScaleOffset' ? scaleOffset(input, vec(C), vec(C), axis) :
      op === 'batchNormInference' ? ((mean, variance) =>
        () => batchNormInference(input, mean, variance, null, null, axis, 1e-3))(vec(C), vec(C)) :
      gn(input, axis);
    cases.push(
        {label: `${op}: int32 x`, make: () => run(tf.zeros(SHAPE, 'int32'), -1), op, argument: 'x',
          message: new RegExp(`^${op}: x must have dtype float32; received int32 \\(shape \\[4, 3, 6\\]\\)`)},
        {label: `${op}: rank-1 x`, make: () => run(tf.zeros([6]), 0), op, argument: 'x',
          message: new RegExp(`^${op}: x must have rank >= 2 \\(batch and channels\\); received shape \\[6\\]`)},
        {label: `${op}: axis 0 (the batch axis)`, make: () => run(x(), 0), op, argument: 'axis',
          message: axisMessage(op, 0, '4, 3, 6')},
        {label: `${op}: axis 3 out of range`, make: () => run(x(), 3), op, argument: 'axis',
          message: axisMessage(op, 3, '4, 3, 6')},
        {label: `${op}: axis -4 out of range`, make: () => run(x(), -4), op, argument: 'axis',
          message: axisMessage(op, -4, '4, 3, 6')},
        {label: `${op}: axis -3 (the batch axis, counted from the end)`, make: () => run(x(), -3), op, argument: 'axis',
          message: axisMessage(op, -3, '4, 3, 6')},
        {label: `${op}: axis 1.5`, make: () => run(x(), 1.5), op, argument: 'axis', message: axisMessage(op, 1.5, '4, 3, 6')},
    );
  }
  const op = 'batchNormTraining';
  cases.push(
      {label: 'batchNormTraining: gamma of 5 channels', make: () => bnTraining(x(), -1, vec(5)), op, argument: 'gamma',
        message: shapeOf(op, 'gamma', C, '5')},
      {label: 'batchNormTraining: beta of 7 channels', make: () => bnTraining(x(), -1, null, vec(7)), op, argument: 'beta',
        message: shapeOf(op, 'beta', C, '7')},
      {label: 'batchNormTraining: gamma of shape [1, 6]', op, argument: 'gamma',
        make: () => bnTraining(x(), -1, tf.ones([1, C]) as unknown as tf.Tensor1D), message: shapeOf(op, 'gamma', C, '1, 6')},
      {label: 'batchNormTraining: int32 gamma', op, argument: 'gamma',
        make: () => bnTraining(x(), -1, tf.ones([C], 'int32') as tf.Tensor1D),
        message: /^batchNormTraining: gamma must have dtype float32; received int32/},
      {label: 'batchNormTraining: renorm.mean of 5 channels', op, argument: 'renorm.mean',
        make: () => bnTraining(x(), -1, null, null, {mean: vec(5), stddev: vec(C)}), message: shapeOf(op, 'renorm.mean', C, '5')},
      {label: 'batchNormTraining: renorm.stddev of 3 channels', op, argument: 'renorm.stddev',
        make: () => bnTraining(x(), -1, null, null, {mean: vec(C), stddev: vec(3)}),
        message: shapeOf(op, 'renorm.stddev', C, '3')},
      {label: 'batchNormInference: mean of 5 channels', op: 'batchNormInference', argument: 'mean',
        make: () => inference(vec(5), vec(C)), message: shapeOf('batchNormInference', 'mean', C, '5')},
      {label: 'batchNormInference: variance of 7 channels', op: 'batchNormInference', argument: 'variance',
        make: () => inference(vec(C), vec(7)), message: shapeOf('batchNormInference', 'variance', C, '7')},
      {label: 'batchNormInference: gamma of 5 channels', op: 'batchNormInference', argument: 'gamma',
        make: () => inference(vec(C), vec(C), vec(5)), message: shapeOf('batchNormInference', 'gamma', C, '5')},
      {label: 'channelScaleOffset: scale of 5 channels', op: 'channelScaleOffset', argument: 'scale',
        make: () => scaleOffset(x(), vec(5), vec(C), -1), message: shapeOf('channelScaleOffset', 'scale', C, '5')},
      {label: 'channelScaleOffset: offset of 7 channels', op: 'channelScaleOffset', argument: 'offset',
        make: () => scaleOffset(x(), vec(C), vec(7), 2), message: shapeOf('channelScaleOffset', 'offset', C, '7')},
      {label: 'groupNorm: gamma of 5 channels', op: 'groupNorm', argument: 'gamma', make: () => gn(x(), -1, vec(5)),
        message: shapeOf('groupNorm', 'gamma', C, '5')},
      {label: 'groupNorm: beta of 7 channels', op: 'groupNorm', argument: 'beta', make: () => gn(x(), -1, null, vec(7)),
        message: shapeOf('groupNorm', 'beta', C, '7')},
  );
  return cases;
}

describe('resolveAxis', () => {
  it('maps [-rank, rank - 1] to [0, rank - 1] and anything else to null', () => {
    expect([-3, -2, -1, 0, 1, 2].map((axis) => resolveAxis(axis, 3))).toEqual([0, 1, 2, 0, 1, 2]);
    expect([-4, 3, 1.5, NaN, Infinity].map((axis) => resolveAxis(axis, 3))).toEqual([null, null, null, null, null]);
  });
});

for (const backend of ['cpu', 'wasm']) {
  describe(`public ops check their inputs on ${backend}`, () => {
    useBackend(backend);

    it.each(badCases().map((c) => [c.label, c] as const))('%s', (_label, c) => {
      // The inputs are made (inside the case) before counting: the failed call itself allocates nothing.
      let error: unknown;
      tf.tidy(() => {
        const call = c.make();
        const before = tf.memory().numTensors;
        try {
          call();
        } catch (e) {
          error = e;
        }
        expect(tf.memory().numTensors).toBe(before);
      });
      expect(error).toBeInstanceOf(NormalizationShapeError);
      expect((error as NormalizationShapeError).owner).toBe(c.op);
      expect((error as NormalizationShapeError).argument).toBe(c.argument);
      expect((error as Error).message).toMatch(c.message);
    });

    // Before these checks, a missing epsilon gave NaN on cpu and a tfjs error on wasm, and a string one wrong values.
    const epsilonCalls: Array<[string, (epsilon: unknown) => unknown]> = [
      ['batchNormTraining', (epsilon) => batchNormTraining(x(), null, null, {axis: -1, epsilon} as never)],
      ['ghostBatchNormTraining', (epsilon) =>
        ghostBatchNormTraining(x(), null, null, {axis: -1, epsilon, virtualBatchSize: 2} as never)],
      ['groupNorm', (epsilon) => groupNormOp(x(), null, null, {axis: -1, groups: 3, epsilon} as never)],
      ['batchNormInference', (epsilon) => batchNormInference(x(), vec(C), vec(C), null, null, -1, epsilon as number)],
      ['foldScaleOffset', (epsilon) => foldScaleOffset(vec(C), vec(C), null, null, epsilon as number)],
    ];
    it.each(epsilonCalls)('%s: a missing, non-positive, non-finite or string epsilon fails early, naming it', (op, call) => {
      for (const epsilon of [undefined, 0, -1, NaN, Infinity, '1e-3']) {
        tf.tidy(() => {
          let error: unknown;
          try {
            call(epsilon);
          } catch (e) {
            error = e;
          }
          expect(error).toBeInstanceOf(NormalizationConfigError);
          expect((error as NormalizationConfigError).field).toBe('epsilon');
          expect((error as Error).message).toMatch(new RegExp(`^${op}: epsilon must be a finite number > 0 .*; ` +
              `received ${epsilon === '1e-3' ? '"1e-3"' : String(epsilon)}\\.$`));
        });
      }
    });

    it('an op called without its options object fails naming the fields it needs', () => tf.tidy(() => {
      expect(() => batchNormTraining(x(), null, null, undefined as never))
          .toThrow(/^batchNormTraining: the options object \{axis, epsilon, renorm\?, statisticsGradients\?\} is required; received undefined/);
      expect(() => ghostBatchNormTraining(x(), null, null, 8 as never))
          .toThrow(/^ghostBatchNormTraining: the options object \{axis, epsilon, virtualBatchSize, renorm\?\} is required; received 8/);
      expect(() => groupNormOp(x(), null, null, null as never)).toThrow(NormalizationConfigError);
    }));

    it('a negative axis gives the same outputs as the positive one, bit for bit', () => {
      tf.tidy(() => {
        const input = x();
        const [gamma, beta, mean, variance] = [vec(C, 11), vec(C, 13), vec(C, 17), vec(C, 19)];
        const same = (a: tf.Tensor, b: tf.Tensor) =>
          expect(Buffer.from(a.dataSync().buffer).equals(Buffer.from(b.dataSync().buffer))).toBe(true);
        const renorm = {mean, stddev: variance, rmin: 0.9, rmax: 1.1, dmax: 0.5};
        const a = batchNormTraining(input, gamma, beta, {axis: -1, epsilon: 1e-3, renorm});
        const b = batchNormTraining(input, gamma, beta, {axis: 2, epsilon: 1e-3, renorm});
        same(a.y, b.y);
        same(a.mean, b.mean);
        same(a.variance, b.variance);
        same(a.r, b.r);
        same(a.d, b.d);
        same(channelScaleOffset(input, gamma, beta, -1), channelScaleOffset(input, gamma, beta, 2));
        same(batchNormInference(input, mean, variance, gamma, beta, -1, 1e-3),
            batchNormInference(input, mean, variance, gamma, beta, 2, 1e-3));
        const onAxis1 = [tf.tensor1d(randomData(3, 23)), tf.tensor1d(randomData(3, 29))] as tf.Tensor1D[];
        same(channelScaleOffset(input, onAxis1[0], onAxis1[1], -2), channelScaleOffset(input, onAxis1[0], onAxis1[1], 1));
        same(groupNormOp(input, gamma, beta, {axis: -1, groups: 3, epsilon: 1e-3}).y,
            groupNormOp(input, gamma, beta, {axis: 2, groups: 3, epsilon: 1e-3}).y);
      });
    });
  });
}
