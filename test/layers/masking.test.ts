/**
 * Masks (issue 11 item 3): BatchNormLayer and BatchRenormLayer compute their
 * training statistics over unmasked positions only, as Keras 3's
 * BatchNormalization does (`_moments(inputs, mask)`); GroupNormLayer ignores
 * the mask, as Keras 3's GroupNormalization does (`def call(self, inputs):`).
 * Expected values come from float64 references of Keras's formulas
 * (test/helpers/masked_reference.ts), on cpu and wasm.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer, NormalizationShapeError} from '../../src';
import {useBackend} from '../helpers/backends';
import {maskedMomentsRef} from '../helpers/masked_reference';
import {maxRelError, normalizeRef, randomData, ref} from '../helpers/reference';
import {centralDifferences, RenormState, renormStepRef, weightedSum} from '../helpers/variant_reference';

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);
const values = (t: tf.Tensor | tfl.LayerVariable) => Array.from((t instanceof tf.Tensor ? t : t.read()).dataSync());

// The batch: two sequences of four steps, one channel; the second has two padded steps.
const SEQUENCES = [1, 2, 3, 4, 5, 6, 0, 0];
const SEQUENCE_MASK = [true, true, true, true, true, true, false, false];

/** Keras's moving-average update, momentum·old + (1 − momentum)·batch, in float64. */
const ema = (old: number, batch: number, momentum: number) => momentum * old + (1 - momentum) * batch;

/** Masking(0) then `layer`, compiled for one sgd step of mean squared error. */
function maskedModel(layer: tfl.layers.Layer, inputShape: number[]): tfl.Sequential {
  const model = tfl.sequential({layers: [tfl.layers.masking({maskValue: 0, inputShape}), layer]});
  model.compile({optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError'});
  return model;
}

async function fitOneStep(model: tfl.LayersModel, x: tf.Tensor): Promise<void> {
  const target = tf.tidy(() => tf.zerosLike(model.predict(x) as tf.Tensor));
  await model.fit(x, target, {epochs: 1, batchSize: x.shape[0], verbose: 0});
  target.dispose();
}

for (const backend of ['cpu', 'wasm']) {
  describe(`masks on ${backend}`, () => {
    useBackend(backend);

    it('Masking + BatchNormLayer in fit: the moving statistics follow the unmasked steps (3.5, 2.92)', async () => {
      const bn = new BatchNormLayer();
      const model = maskedModel(bn, [4, 1]);
      await fitOneStep(model, tf.tensor3d(SEQUENCES, [2, 4, 1]));
      const m = maskedMomentsRef(ref([2, 4, 1], SEQUENCES), 2, SEQUENCE_MASK);
      // The unmasked steps 1..6: mean 3.5 and biased variance 35/12 (less Keras's 1e-7 in the count).
      expect(m.mean[0]).toBeCloseTo(3.5, 6);
      expect(m.variance[0]).toBeCloseTo(35 / 12, 6);
      expect(maxRelError(values(bn.movingMean), [ema(0, m.mean[0], 0.99)])).toBeLessThan(1e-6);
      expect(maxRelError(values(bn.movingVariance), [ema(1, m.variance[0], 0.99)])).toBeLessThan(1e-6);
    });

    it('Embedding({maskZero: true}) + BatchNormLayer in fit: padding tokens do not reach the statistics', async () => {
      // Frozen (pretrained) embeddings: tfjs's wasm backend has no UnsortedSegmentSum, Embedding's gradient.
      const embedding = tfl.layers.embedding({inputDim: 7, outputDim: 2, maskZero: true, inputLength: 4,
        trainable: false});
      const bn = new BatchNormLayer({momentum: 0.9, unbiasedVariance: true});
      const model = tfl.sequential({layers: [embedding, bn]});
      model.compile({optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError'});
      // Token k embeds as [k, 10k]; the padding token 0 as [100, −50], far from the data.
      const table = [100, -50, ...Array.from({length: 6}, (_, k) => [k + 1, 10 * (k + 1)]).flat()];
      embedding.setWeights([tf.tensor2d(table, [7, 2])]);
      const tokens = tf.tensor2d([[1, 2, 3, 4], [5, 6, 0, 0]]);
      await fitOneStep(model, tokens);
      const embedded = [...SEQUENCES.slice(0, 6).flatMap((k) => [k, 10 * k]), 100, -50, 100, -50];
      const m = maskedMomentsRef(ref([2, 4, 2], embedded), 2, SEQUENCE_MASK);
      const unbiased = m.variance.map((v) => v * m.count / (m.count - 1));
      expect(m.count).toBe(6);
      expect(maxRelError(values(bn.movingMean), m.mean.map((v) => ema(0, v, 0.9)))).toBeLessThan(1e-6);
      expect(maxRelError(values(bn.movingVariance), unbiased.map((v) => ema(1, v, 0.9)))).toBeLessThan(1e-6);
    });

    it('training output: every position normalized with the masked statistics; inference ignores the mask', () => {
      const shape = [3, 5, 4];
      const xData = randomData(size(shape), 3, 1, 2);
      const maskData = Array.from(randomData(15, 5), (v) => v > -0.5);
      const gamma = Array.from(randomData(4, 7, 1, 0.3));
      const beta = Array.from(randomData(4, 11));
      const bn = new BatchNormLayer({momentum: 0.5});
      const x = tf.tensor3d(xData, shape as [number, number, number]);
      const mask = tf.tensor2d(maskData, [3, 5], 'bool');
      bn.apply(x);
      bn.gamma!.write(tf.tensor1d(gamma));
      bn.beta!.write(tf.tensor1d(beta));
      const y = bn.apply(x, {training: true, mask}) as tf.Tensor;
      const m = maskedMomentsRef(ref(shape, xData), 2, maskData);
      expect(maxRelError(y.dataSync(), normalizeRef(ref(shape, xData), 2, m.mean, m.variance, 1e-3, gamma, beta).data))
          .toBeLessThan(1e-5);
      const inference = values(bn.apply(x, {mask}) as tf.Tensor);
      expect(inference).toEqual(values(bn.apply(x) as tf.Tensor));
      const moving = m.mean.map((v) => ema(0, v, 0.5));
      const movingVariance = m.variance.map((v) => ema(1, v, 0.5));
      expect(maxRelError(inference,
          normalizeRef(ref(shape, xData), 2, moving, movingVariance, 1e-3, gamma, beta).data)).toBeLessThan(1e-5);
      // The mask passes on to the next layer unchanged.
      expect(bn.computeMask(x, mask)).toBe(mask);
    });

    it('dx, dγ, dβ of the layer in training with a mask match central differences of the float64 reference', () => {
      const shape = [4, 3, 2];
      const xData = Array.from(randomData(size(shape), 13, 0.5, 2));
      const maskData = [true, false, true, true, true, false, true, true, false, true, true, true];
      const w = Array.from(randomData(size(shape), 17));
      const bn = new BatchNormLayer();
      bn.apply(tf.zeros(shape));
      const mask = tf.tensor2d(maskData, [4, 3], 'bool');
      const loss = (x: tf.Tensor) => tf.sum(tf.mul(bn.apply(x, {training: true, mask}) as tf.Tensor, tf.tensor(w, shape)));
      const dx = values(tf.grad(loss)(tf.tensor(xData, shape)));
      const {grads} = tf.variableGrads(() => loss(tf.tensor(xData, shape)) as tf.Scalar, [
        bn.gamma!.read() as tf.Variable, bn.beta!.read() as tf.Variable]);
      const f64 = (xs: number[], g: number[], b: number[]) => {
        const m = maskedMomentsRef(ref(shape, xs), 2, maskData);
        return weightedSum(normalizeRef(ref(shape, xs), 2, m.mean, m.variance, 1e-3, g, b).data, w);
      };
      expect(maxRelError(dx, centralDifferences((v) => f64(v, [1, 1], [0, 0]), xData))).toBeLessThan(1e-4);
      const [dGamma, dBeta] = Object.values(grads).map(values);
      expect(maxRelError(dGamma, centralDifferences((v) => f64(xData, v, [0, 0]), [1, 1]))).toBeLessThan(1e-4);
      expect(maxRelError(dBeta, centralDifferences((v) => f64(xData, [1, 1], v), [0, 0]))).toBeLessThan(1e-4);
    });

    it('Masking + BatchRenormLayer in fit: renorm and moving statistics from the masked moments', async () => {
      const cfg = {axis: 2, eps: 1e-3, momentum: 0.9, renormMomentum: 0.8, rmin: 0.5, rmax: 2, dmax: 0.4};
      const brn = new BatchRenormLayer({momentum: cfg.momentum, renormMomentum: cfg.renormMomentum,
        renormClipping: {rmin: cfg.rmin, rmax: cfg.rmax, dmax: cfg.dmax}});
      const model = maskedModel(brn, [4, 1]);
      await fitOneStep(model, tf.tensor3d(SEQUENCES, [2, 4, 1]));
      const start: RenormState = {gamma: [1], beta: [0], movingMean: [0], movingVariance: [1], movingStddev: [1],
        renormMean: [0], renormStddev: [1]};
      const x = ref([2, 4, 1], SEQUENCES);
      const {next, r, d} = renormStepRef(x, start, cfg, undefined, maskedMomentsRef(x, 2, SEQUENCE_MASK));
      // Mean 3.5 against renorm mean 0 pushes d to its limit; r = √(35/12 + ε) is inside (0.5, 2).
      expect(d).toEqual([cfg.dmax]);
      expect(r[0]).toBeGreaterThan(cfg.rmin);
      expect(r[0]).toBeLessThan(cfg.rmax);
      expect(maxRelError(values(brn.renormMean), next.renormMean)).toBeLessThan(1e-6);
      expect(maxRelError(values(brn.renormStddev), next.renormStddev)).toBeLessThan(1e-6);
      expect(maxRelError(values(brn.movingMean), next.movingMean)).toBeLessThan(1e-6);
      expect(maxRelError(values(brn.movingStddev), next.movingStddev)).toBeLessThan(1e-6);
      expect(maxRelError(values(brn.movingVariance), next.movingVariance)).toBeLessThan(1e-6);
    });

    it('BatchRenormLayer training output with a mask: y = γ·(x̂·r + d) + β from the masked moments', () => {
      const shape = [3, 4, 2];
      const xData = randomData(size(shape), 19, 2, 1.5);
      const maskData = [true, true, false, true, false, true, true, true, true, false, true, true];
      const cfg = {axis: 2, eps: 1e-3, momentum: 0.99, renormMomentum: 0.99, rmin: 0.8, rmax: 1.2, dmax: 0.5};
      const brn = new BatchRenormLayer({renormClipping: {rmin: cfg.rmin, rmax: cfg.rmax, dmax: cfg.dmax}});
      const x = tf.tensor(xData, shape);
      const y = brn.apply(x, {training: true, mask: tf.tensor2d(maskData, [3, 4], 'bool')}) as tf.Tensor;
      const start: RenormState = {gamma: [1, 1], beta: [0, 0], movingMean: [0, 0], movingVariance: [1, 1],
        movingStddev: [1, 1], renormMean: [0, 0], renormStddev: [1, 1]};
      const xRef = ref(shape, xData);
      const expected = renormStepRef(xRef, start, cfg, undefined, maskedMomentsRef(xRef, 2, maskData));
      expect(maxRelError(y.dataSync(), expected.y.data)).toBeLessThan(1e-5);
    });

    it('channels-first (axis 1, input [N, C, T], mask [N, T]) equals the channels-last result transposed', () => {
      const xData = randomData(2 * 3 * 5, 23, 1, 2);
      const maskData = [true, true, true, false, false, true, true, false, true, true];
      const mask = tf.tensor2d(maskData, [2, 5], 'bool');
      const first = new BatchNormLayer({axis: 1});
      const last = new BatchNormLayer();
      const xFirst = tf.tensor3d(xData, [2, 3, 5]);
      const xLast = tf.transpose(xFirst, [0, 2, 1]);
      const yFirst = first.apply(xFirst, {training: true, mask}) as tf.Tensor;
      const yLast = last.apply(xLast, {training: true, mask}) as tf.Tensor;
      expect(maxRelError(values(tf.transpose(yFirst, [0, 2, 1])), values(yLast))).toBeLessThan(1e-6);
      expect(maxRelError(values(first.movingMean), values(last.movingMean))).toBeLessThan(1e-6);
      expect(maxRelError(values(first.movingVariance), values(last.movingVariance))).toBeLessThan(1e-6);
      const m = maskedMomentsRef(ref([2, 3, 5], xData), 1, maskData);
      expect(maxRelError(values(first.movingMean), m.mean.map((v) => ema(0, v, 0.99)))).toBeLessThan(1e-6);
    });

    it.each([[1], [0]])('%d unmasked value: normalized with the moving statistics, which stay unchanged', (kept) => {
      const bn = new BatchNormLayer({movingMeanInitializer: tfl.initializers.constant({value: 0.5}),
        movingVarianceInitializer: tfl.initializers.constant({value: 2})});
      const x = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2]);
      const mask = tf.tensor2d([kept === 1, false, false, false], [2, 2], 'bool');
      const y = values(bn.apply(x, {training: true, mask}) as tf.Tensor);
      expect(values(bn.movingMean)).toEqual([0.5, 0.5]);
      expect(values(bn.movingVariance)).toEqual([2, 2]);
      const expected = normalizeRef(ref([2, 2, 2], values(x)), 2, [0.5, 0.5], [2, 2], 1e-3).data;
      expect(maxRelError(y, expected)).toBeLessThan(1e-6);
    });

    it('a bad mask fails naming the layer, the mask shape and the input shape, and changes nothing', () => {
      const bn = new BatchNormLayer({name: 'bn_masked'});
      const x = tf.ones([2, 4, 3]);
      bn.apply(x);
      const before = bn.getWeights().map(values);
      for (const training of [true, false]) {
        expect(() => bn.apply(x, {training, mask: tf.ones([2, 4, 1], 'bool')})).toThrow(NormalizationShapeError);
        expect(() => bn.apply(x, {training, mask: tf.ones([2, 3], 'bool')})).toThrow(
            "BatchNormLayer 'bn_masked': the mask must have the input's shape without the channel axis 2, " +
            '[2, 4] for input shape [2, 4, 3]; received mask shape [2, 3].');
        expect(() => bn.apply(x, {training, mask: tf.ones([2, 4], 'float32')})).toThrow(/received dtype float32/);
      }
      expect(bn.getWeights().map(values)).toEqual(before);
    });

    it('GroupNormLayer: the mask passes through and the statistics ignore it, as in Keras 3', () => {
      const gn = new GroupNormLayer({groups: 2});
      const x = tf.tensor3d(randomData(2 * 4 * 4, 29, 1, 2), [2, 4, 4]);
      const mask = tf.tensor2d([true, true, false, false, true, false, false, false], [2, 4], 'bool');
      expect(values(gn.apply(x, {training: true, mask}) as tf.Tensor)).toEqual(values(gn.apply(x) as tf.Tensor));
      expect(gn.computeMask(x, mask)).toBe(mask);
      const model = maskedModel(new GroupNormLayer({groups: 1}), [4, 1]);
      const y = model.predict(tf.tensor3d(SEQUENCES, [2, 4, 1])) as tf.Tensor;
      // Per sample over all steps, padded ones included (Keras's GroupNormalization has no mask argument).
      const sample2 = ref([1, 4, 1], [5, 6, 0, 0]);
      const expected = normalizeRef(sample2, 0, [2.75], [(2.25 ** 2 + 3.25 ** 2 + 2 * 2.75 ** 2) / 4], 1e-3);
      expect(maxRelError(values(y).slice(4), expected.data)).toBeLessThan(1e-5);
    });

    it('fit with masks leaves no tensor behind (BatchNormLayer and BatchRenormLayer)', async () => {
      for (const layer of [new BatchNormLayer(), new BatchRenormLayer({renormClipping: {rmax: 2, rmin: 0.5, dmax: 1}})]) {
        const model = maskedModel(layer, [4, 1]);
        const x = tf.tensor3d(SEQUENCES, [2, 4, 1]);
        await fitOneStep(model, x);
        const before = tf.memory().numTensors;
        for (let i = 0; i < 3; i++) await fitOneStep(model, x);
        expect(tf.memory().numTensors).toBe(before);
        x.dispose();
      }
    });
  });
}
