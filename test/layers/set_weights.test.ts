/**
 * setWeights is all or nothing (issue 11 item 5): every value is checked first
 * (count, dtype, shape, finite, >= 0 for variances and standard deviations),
 * then written, so a bad value leaves every weight as it was. tfjs's built-in
 * BatchNormalization is the reference for "rejects the whole list". The
 * weights themselves are tfjs's LayerVariables, unpatched.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationLayer, NormalizationShapeError} from '../../src';
import {randomData} from '../helpers/reference';

const CHANNELS = 3;

function built<T extends NormalizationLayer>(layer: T): T {
  layer.apply(tfl.input({shape: [CHANNELS]}));
  return layer;
}

const values = (layer: tfl.layers.Layer) => layer.getWeights().map((w) => Array.from(w.dataSync()));

/** Valid values for every weight (positive, so variances and stddevs are valid too). */
function goodValues(layer: tfl.layers.Layer, seed: number): tf.Tensor[] {
  return layer.weights.map((w, i) =>
    tf.tensor(randomData(w.shape.length === 0 ? 1 : w.shape[0]!, seed + i, 1.5, 0.25), w.shape as number[]));
}

/** Calls setWeights and returns what it threw. */
function thrown(layer: tfl.layers.Layer, weights: tf.Tensor[]): Error {
  try {
    layer.setWeights(weights);
  } catch (e) {
    return e as Error;
  }
  throw new Error('setWeights did not throw');
}

describe('setWeights', () => {
  it('writes every value when all are valid', () => {
    const layer = built(new BatchNormLayer({name: 'bn'}));
    const weights = goodValues(layer, 1);
    layer.setWeights(weights);
    expect(values(layer)).toEqual(weights.map((w) => Array.from(w.dataSync())));
    tf.dispose(weights);
    layer.dispose();
  });

  it('[good, good, NaN mean, good] throws naming the weight and changes nothing, as tfjs\'s own layer does', () => {
    const ours = built(new BatchNormLayer({name: 'bn'}));
    const before = values(ours);
    const weights = goodValues(ours, 2);
    const poisoned = [weights[0], weights[1], tf.tensor1d([0, NaN, 0]), weights[3]];
    const tensors = tf.memory().numTensors;
    expect(thrown(ours, poisoned).message).toBe(
        "BatchNormLayer 'bn': weight 'moving_mean' holds NaN at index 1; expected finite values.");
    expect(values(ours)).toEqual(before);
    expect(tf.memory().numTensors).toBe(tensors);

    // tfjs's built-in layer with a bad third value (it checks shapes only): nothing written either.
    const builtin = tfl.layers.batchNormalization({name: 'builtin'});
    builtin.apply(tfl.input({shape: [CHANNELS]}));
    const builtinBefore = values(builtin);
    expect(() => builtin.setWeights([weights[0], weights[1], tf.zeros([4]), weights[3]])).toThrow();
    expect(values(builtin)).toEqual(builtinBefore);
    tf.dispose([...weights, poisoned[2]]);
    ours.dispose();
    builtin.dispose();
  });

  it('a wrong shape gets the layer, weight, expected and received shape; nothing is written', () => {
    const layer = built(new BatchNormLayer({name: 'bn'}));
    const before = values(layer);
    const weights = goodValues(layer, 3);
    const wrong = [weights[0], tf.zeros([2, 2]), weights[2], weights[3]];
    expect(thrown(layer, wrong).message).toBe("BatchNormLayer 'bn': weight 'beta' must have shape [3]; received [2, 2].");
    expect(values(layer)).toEqual(before);
    tf.dispose([...weights, wrong[1]]);
    layer.dispose();
  });

  it('rejects a wrong dtype, a negative variance, a negative renorm_step; nothing is written', () => {
    const brn = built(new BatchRenormLayer({name: 'brn', renormClipping: {rmax: 3, dmax: 5},
      renormWarmup: {plainSteps: 2, rmaxReachedAt: 6, dmaxReachedAt: 4}}));
    const names = brn.weights.map((w) => w.originalName.split('/').pop());
    expect(names).toEqual(['gamma', 'beta', 'moving_mean', 'moving_variance', 'moving_stddev', 'renorm_mean',
      'renorm_stddev', 'renorm_step']);
    const before = values(brn);
    const weights = goodValues(brn, 4);
    const cases: Array<[number, tf.Tensor, string]> = [
      [3, tf.tensor1d([1, -0.5, 1]), "weight 'moving_variance' holds -0.5 at index 1; expected finite values >= 0"],
      [4, tf.tensor1d([1, 1, -Infinity]), "weight 'moving_stddev' holds -Infinity at index 2"],
      [7, tf.scalar(-1), "weight 'renorm_step' holds -1 at index 0; expected finite values >= 0"],
      [0, tf.tensor1d([1, 2, 3], 'int32'), "weight 'gamma' must have dtype float32; received int32"],
      [5, tf.scalar(0), "weight 'renorm_mean' must have shape [3]; received []"],
    ];
    for (const [index, bad, message] of cases) {
      const list = weights.map((w, i) => i === index ? bad : w);
      expect(thrown(brn, list).message).toContain(`BatchRenormLayer 'brn': ${message}`);
      expect(values(brn)).toEqual(before);
      bad.dispose();
    }
    tf.dispose(weights);
    brn.dispose();
  });

  it('a wrong count or a non-tensor is a NormalizationShapeError naming the weights expected', () => {
    const layer = built(new GroupNormLayer({name: 'gn', groups: 1}));
    const before = values(layer);
    const one = tf.ones([CHANNELS]);
    const error = thrown(layer, [one]) as NormalizationShapeError;
    expect(error).toBeInstanceOf(NormalizationShapeError);
    expect(error.owner).toBe("GroupNormalization 'gn'");
    expect(error.message).toContain('setWeights expects 2 values (gamma, beta); received 1');
    const notTensor = thrown(layer, [one, [1, 2, 3] as never]) as NormalizationShapeError;
    expect(notTensor).toBeInstanceOf(NormalizationShapeError);
    expect(notTensor.argument).toBe('beta');
    expect(values(layer)).toEqual(before);
    one.dispose();
    layer.dispose();
  });

  it('leaves tfjs\'s LayerVariable.write unpatched on every weight', () => {
    const layer = built(new BatchRenormLayer({name: 'brn'}));
    for (const weight of layer.weights) {
      expect(Object.prototype.hasOwnProperty.call(weight, 'write')).toBe(false);
      expect(weight.write).toBe(tfl.LayerVariable.prototype.write);
    }
    layer.dispose();
  });
});
