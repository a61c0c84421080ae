import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  BatchNormLayer, BatchRenormLayer, foldBatchNorm, GroupNormLayer, InferenceScaleOffset, NormalizationLayer,
  NormalizationShapeError,
} from '../../src';
import {maxRelError, randomData} from '../helpers/reference';
import {randomizeWeights} from './helpers';

function predict(model: tfl.LayersModel, x: tf.Tensor | tf.Tensor[]): Float32Array[] {
  const out = model.predict(x);
  return (Array.isArray(out) ? out : [out]).map((t) => t.dataSync() as Float32Array);
}

function expectSamePredictions(a: tfl.LayersModel, b: tfl.LayersModel, x: tf.Tensor | tf.Tensor[]): void {
  const pa = predict(a, x);
  const pb = predict(b, x);
  expect(pb.length).toBe(pa.length);
  pa.forEach((p, i) => expect(maxRelError(pb[i], p)).toBeLessThan(1e-5));
}

describe('foldBatchNorm on a Sequential model', () => {
  function build(): tfl.Sequential {
    const model = tfl.sequential();
    model.add(tfl.layers.conv2d({filters: 4, kernelSize: 3, inputShape: [6, 6, 3], name: 'conv'}));
    model.add(new BatchRenormLayer({name: 'renorm', renormClipping: {rmax: 3, dmax: 5}}));
    model.add(tfl.layers.depthwiseConv2d({kernelSize: 2, depthMultiplier: 2, useBias: false, name: 'depthwise'}));
    model.add(tfl.layers.batchNormalization({name: 'builtin_bn'}));
    model.add(tfl.layers.flatten({name: 'flatten'}));
    model.add(tfl.layers.dense({units: 5, activation: 'relu', name: 'dense_relu'}));
    model.add(new BatchNormLayer({name: 'bn_after_relu'}));
    model.add(tfl.layers.dense({units: 4, name: 'dense_linear'}));
    model.add(new BatchNormLayer({name: 'bn_dense', epsilon: 1e-5, scale: false}));
    model.add(new GroupNormLayer({name: 'gn', groups: 2}));
    randomizeWeights(model, 1);
    return model;
  }

  it('folds BN after linear Dense, Conv2D and DepthwiseConv2D and keeps the others with reasons', () => {
    const model = build();
    const x = tf.tensor4d(randomData(2 * 6 * 6 * 3, 5, 0.5, 2), [2, 6, 6, 3]);
    const before = predict(model, x)[0];
    const {model: folded, folded: names, kept} = foldBatchNorm(model);

    expect(names).toEqual(['renorm', 'builtin_bn', 'bn_dense']);
    expect(kept).toEqual([
      {name: 'bn_after_relu', reason: "it follows 'dense_relu' whose activation is relu, not linear"},
      {name: 'gn', reason: 'GroupNormalization uses per-sample statistics, which no kernel can absorb'},
    ]);
    // Each merged layer takes the folded layer's name.
    expect(folded.layers.map((l) => l.name)).toEqual(
        ['renorm', 'builtin_bn', 'flatten', 'dense_relu', 'bn_after_relu', 'bn_dense', 'gn']);
    expect(folded.getLayer('renorm').getClassName()).toBe('Conv2D');
    expect(folded.getLayer('builtin_bn').getClassName()).toBe('DepthwiseConv2D');
    expect(folded.getLayer('builtin_bn').getWeights()).toHaveLength(2);  // a bias was added
    expectSamePredictions(model, folded, x);
    // The original model is untouched.
    expect(predict(model, x)[0]).toEqual(before);
  });

  it('matches a float64 fold of Dense → BN computed by hand', () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 3, inputShape: [2], name: 'd'}),
      new BatchNormLayer({name: 'bn', epsilon: 0.01}),
    ]});
    randomizeWeights(model, 7);
    const [W, b, gamma, beta, mean, variance] = model.getWeights().map((t) => Array.from(t.dataSync()));
    const {model: folded} = foldBatchNorm(model);
    const [W2, b2] = folded.getWeights().map((t) => Array.from(t.dataSync()));
    for (let j = 0; j < 3; j++) {
      const s = gamma[j] / Math.sqrt(variance[j] + 0.01);
      expect(b2[j]).toBeCloseTo((b[j] - mean[j]) * s + beta[j], 5);
      for (let i = 0; i < 2; i++) expect(W2[i * 3 + j]).toBeCloseTo(W[i * 3 + j] * s, 5);
    }
  });

  it('keeps a BN on the model input and one that normalizes another axis', () => {
    const model = tfl.sequential({layers: [
      new BatchNormLayer({name: 'bn_input', inputShape: [4, 5]}),
      tfl.layers.dense({units: 3, name: 'd'}),
      new BatchNormLayer({name: 'bn_axis1', axis: 1}),
    ]});
    randomizeWeights(model, 3);
    const {model: folded, folded: names, kept} = foldBatchNorm(model);
    expect(names).toEqual([]);
    expect(kept).toEqual([
      {name: 'bn_input', reason: 'it reads the model input directly'},
      {name: 'bn_axis1', reason: "it normalizes axis 1, but the channels of 'd' are on axis 2"},
    ]);
    expectSamePredictions(model, folded, tf.tensor3d(randomData(40, 4), [2, 4, 5]));
  });
});

describe('foldBatchNorm on a functional model', () => {
  it('folds where the conv output feeds only the BN, keeps shared outputs, channels-first included', () => {
    const input = tfl.input({shape: [5, 5, 2], name: 'x'});
    const c1 = tfl.layers.conv2d({filters: 3, kernelSize: 1, name: 'c1'}).apply(input) as tfl.SymbolicTensor;
    const b1 = new BatchNormLayer({name: 'b1'}).apply(c1) as tfl.SymbolicTensor;
    // c2's output feeds the BN and the residual add: not foldable.
    const c2 = tfl.layers.conv2d({filters: 3, kernelSize: 1, name: 'c2'}).apply(b1) as tfl.SymbolicTensor;
    const b2 = tfl.layers.batchNormalization({name: 'b2'}).apply(c2) as tfl.SymbolicTensor;
    const sum = tfl.layers.add({name: 'sum'}).apply([b2, c2]) as tfl.SymbolicTensor;
    // Channels-first conv with BN on axis 1: foldable; with BN on the last axis: kept.
    const c3 = tfl.layers.conv2d({filters: 5, kernelSize: 1, dataFormat: 'channelsFirst', name: 'c3'})
        .apply(sum) as tfl.SymbolicTensor;
    const b3 = new BatchNormLayer({name: 'b3', axis: 1}).apply(c3) as tfl.SymbolicTensor;
    const c4 = tfl.layers.conv2d({filters: 3, kernelSize: 1, dataFormat: 'channelsFirst', name: 'c4'})
        .apply(b3) as tfl.SymbolicTensor;
    const b4 = new BatchNormLayer({name: 'b4'}).apply(c4) as tfl.SymbolicTensor;
    const d = tfl.layers.dense({units: 2, name: 'd'}).apply(b4) as tfl.SymbolicTensor;
    const b5 = new BatchRenormLayer({name: 'b5'}).apply(d) as tfl.SymbolicTensor;
    const model = tfl.model({inputs: input, outputs: [b5, b1]});
    randomizeWeights(model, 11);

    const {model: folded, folded: names, kept} = foldBatchNorm(model);
    // b1 is a model output and feeds c2, but only b1 reads c1: foldable (the output becomes c1's).
    expect(names).toEqual(['b1', 'b3', 'b5']);
    expect(kept).toEqual([
      {name: 'b2', reason: "the output of 'c2' also feeds other layers or the model output"},
      {name: 'b4', reason: "it normalizes axis 3, but the channels of 'c4' are on axis 1"},
    ]);
    expect(folded.layers.length).toBe(model.layers.length - 3);
    expectSamePredictions(model, folded, tf.tensor4d(randomData(3 * 50, 21, 1, 2), [3, 5, 5, 2]));
  });

  it('keeps a BN whose input is also a model output, folds a BN that is the model output', () => {
    const input = tfl.input({shape: [3]});
    const d1 = tfl.layers.dense({units: 4, name: 'f1'}).apply(input) as tfl.SymbolicTensor;
    const b1 = new BatchNormLayer({name: 'fb1'}).apply(d1) as tfl.SymbolicTensor;
    const model = tfl.model({inputs: input, outputs: [b1, d1]});
    randomizeWeights(model, 4);
    const result = foldBatchNorm(model);
    expect(result.folded).toEqual([]);
    expect(result.kept[0].reason).toMatch(/also feeds other layers or the model output/);

    const single = tfl.model({inputs: input, outputs: b1});
    const r2 = foldBatchNorm(single);
    expect(r2.folded).toEqual(['fb1']);
    // The merged Dense carries the BN's name, so the output keeps its name.
    expect(r2.model.outputs[0].sourceLayer.name).toBe('fb1');
    expect(r2.model.outputNames).toEqual(single.outputNames);
    expectSamePredictions(single, r2.model, tf.tensor2d(randomData(12, 2), [4, 3]));
  });
});

describe('foldBatchNorm keeps names', () => {
  it('every layer name of the folded model outputs what it did in the original, outputs included', () => {
    const input = tfl.input({shape: [4], name: 'x'});
    const d1 = tfl.layers.dense({units: 5, name: 'd1'}).apply(input) as tfl.SymbolicTensor;
    const bn1 = new BatchNormLayer({name: 'bn1'}).apply(d1) as tfl.SymbolicTensor;
    const d2 = tfl.layers.dense({units: 3, name: 'd2'}).apply(bn1) as tfl.SymbolicTensor;
    const bnOut = new BatchRenormLayer({name: 'bn_out'}).apply(d2) as tfl.SymbolicTensor;
    const model = tfl.model({inputs: input, outputs: [bnOut, bn1]});
    randomizeWeights(model, 9);
    const {model: folded, folded: names} = foldBatchNorm(model);
    expect(names).toEqual(['bn1', 'bn_out']);
    expect(folded.outputNames).toEqual(model.outputNames);
    expect(folded.outputNames).toEqual(['bn_out', 'bn1']);
    // Probe every layer of the folded model by name in both models.
    const probed = folded.layers.filter((l) => l.getClassName() !== 'InputLayer').map((l) => l.name);
    expect(probed).toEqual(['bn1', 'bn_out']);
    const probe = (m: tfl.LayersModel) => tfl.model({inputs: m.inputs,
      outputs: probed.map((n) => m.getLayer(n).output as tfl.SymbolicTensor)});
    expectSamePredictions(probe(model), probe(folded), tf.tensor2d(randomData(12, 3), [3, 4]));
  });
});

/** A per-sample layer of a user's own (x/max|x| per sample): no inference affine, and it says so in its own words. */
class PerSampleScale extends NormalizationLayer {
  static override className = 'FoldTestPerSampleScale';
  protected override normalize(x: tf.Tensor): tf.Tensor {
    return tf.div(x, tf.add(tf.max(tf.abs(x), -1, true), this.epsilon));
  }
}
tf.serialization.registerClass(PerSampleScale);

/** A user's variant whose inferenceScaleOffset is wrong (one value, not one per channel). */
class BadAffine extends NormalizationLayer {
  static override className = 'FoldTestBadAffine';
  protected override normalize(x: tf.Tensor): tf.Tensor {
    return x;
  }
  override inferenceScaleOffset(): InferenceScaleOffset {
    return {scale: tf.ones([1]), offset: tf.zeros([1])};
  }
}
tf.serialization.registerClass(BadAffine);

describe('foldBatchNorm with a normalization layer of your own', () => {
  it('keeps a layer without an inference affine with the default reason, not "per-sample statistics"', () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 3, inputShape: [2], name: 'd'}), new PerSampleScale({name: 'mine'}),
    ]});
    const {folded, kept} = foldBatchNorm(model);
    expect(folded).toEqual([]);
    expect(kept).toEqual([{name: 'mine', reason:
        'FoldTestPerSampleScale does not give a per-channel inference scale and offset ' +
        '(NormalizationLayer.inferenceScaleOffset)'}]);
  });

  it('rejects an inferenceScaleOffset of the wrong shape, naming the layer, and leaks nothing', () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 3, inputShape: [2], name: 'd'}), new BadAffine({name: 'bad'}),
    ]});
    const before = tf.memory().numTensors;
    const error = (() => { try { foldBatchNorm(model); } catch (e) { return e; } })() as NormalizationShapeError;
    expect(error).toBeInstanceOf(NormalizationShapeError);
    expect(error.owner).toBe("FoldTestBadAffine 'bad'");
    expect(error.argument).toBe('scale');
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('foldBatchNorm with a nested model', () => {
  it('reports normalization layers inside a nested model as kept and still predicts the same', () => {
    const inner = tfl.sequential({name: 'inner', layers: [
      tfl.layers.dense({units: 3, inputShape: [2], name: 'inner_dense'}), new BatchNormLayer({name: 'inner_bn'}),
    ]});
    const outer = tfl.sequential({layers: [inner, tfl.layers.dense({units: 2, name: 'outer_dense'}),
      new BatchNormLayer({name: 'outer_bn'})]});
    randomizeWeights(outer, 5);
    const {model, folded, kept} = foldBatchNorm(outer);
    expect(folded).toEqual(['outer_bn']);
    expect(kept).toEqual([{name: 'inner_bn', reason: "it is inside the nested model 'inner'; fold that model on its own"}]);
    expectSamePredictions(outer, model, tf.tensor2d(randomData(8, 6), [4, 2]));
  });
});

describe('foldBatchNorm memory', () => {
  it('leaves no tensors behind besides the new model weights', () => {
    const model = tfl.sequential({layers: [
      tfl.layers.dense({units: 3, inputShape: [2]}), new BatchNormLayer({}),
    ]});
    randomizeWeights(model, 2);
    const before = tf.memory().numTensors;
    const {model: folded} = foldBatchNorm(model);
    expect(tf.memory().numTensors - before).toBe(folded.weights.length);
    folded.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects anything but a LayersModel', () => {
    expect(() => foldBatchNorm({} as tfl.LayersModel)).toThrow('foldBatchNorm: expected a tf.LayersModel');
  });
});
