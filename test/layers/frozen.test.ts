/**
 * Frozen base models (issue 11, item 1). TF2 Keras: every BatchNormalization
 * inside a model whose `trainable` is false runs in inference mode and keeps its
 * moving statistics, whatever the nesting and whenever the freeze happened.
 * Checks: the statistics are bit-identical before and after training, the
 * outer model's loss in training equals its inference loss (so the frozen
 * layer normalized with its moving statistics), the head did train, and the
 * parameter counts equal tfjs's for the same model with its built-in layer.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as tfd from '@tensorflow/tfjs-data';
import {BatchNormLayer, BatchRenormLayer, markFrozenLayers, clearFrozenLayers} from '../../src';
import {randomData} from '../helpers/reference';

const FEATURES = 4;
const SAMPLES = 24;
type Kind = 'BN' | 'BRN';

function normLayer(kind: Kind, args: Record<string, unknown> = {}): BatchNormLayer {
  // Moving statistics far from the data's, so training mode and inference differ clearly.
  const common = {movingMeanInitializer: 'ones', movingVarianceInitializer: 'ones', momentum: 0.5, ...args};
  return kind === 'BN' ? new BatchNormLayer(common) : new BatchRenormLayer({...common, renormMomentum: 0.5});
}

/** Dense -> norm, built (input shape given). */
function base(kind: Kind, args?: Record<string, unknown>): {model: tfl.Sequential; norm: BatchNormLayer} {
  const norm = normLayer(kind, args);
  const model = tfl.sequential({layers: [
    tfl.layers.dense({inputShape: [FEATURES], units: FEATURES, kernelInitializer: 'glorotUniform'}), norm,
  ]});
  return {model, norm};
}

/** Input -> inner -> Dense head, compiled. */
function outer(inner: tfl.layers.Layer, lr = 0.01): tfl.LayersModel {
  const input = tfl.input({shape: [FEATURES]});
  const hidden = inner.apply(input) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({units: 1}).apply(hidden) as tfl.SymbolicTensor;
  const model = tfl.model({inputs: input, outputs: output});
  model.compile({optimizer: tf.train.sgd(lr), loss: 'meanSquaredError'});
  return model;
}

/** A BN base inside a frozen Sequential inside the outer model: frozen two levels up. */
function frozenTwoDeep(): {model: tfl.LayersModel; middle: tfl.Sequential; norm: BatchNormLayer} {
  const {model: inner, norm} = base('BN');
  const middle = tfl.sequential({layers: [inner]});
  middle.trainable = false;
  return {model: outer(middle), middle, norm};
}

const data = () => ({
  x: tf.tensor2d(randomData(SAMPLES * FEATURES, 3, 2, 1), [SAMPLES, FEATURES]),
  y: tf.tensor2d(randomData(SAMPLES, 5), [SAMPLES, 1]),
});

/** Every statistic the layer holds (moving and, for renorm, renorm averages), as plain arrays. */
function statistics(norm: BatchNormLayer): number[][] {
  const weights = [norm.movingMean, norm.movingVariance];
  if (norm instanceof BatchRenormLayer) weights.push(norm.movingStddev, norm.renormMean, norm.renormStddev);
  return weights.map((w) => Array.from(w.read().dataSync()));
}

const headKernel = (model: tfl.LayersModel) => Array.from(model.layers[model.layers.length - 1].getWeights()[0].dataSync());

/** fit with lr 0 reports the training-mode loss; it equals evaluate's (inference) loss only if the layer is frozen. */
async function trainingLossEqualsInference(model: tfl.LayersModel, x: tf.Tensor, y: tf.Tensor): Promise<void> {
  const lr0 = outer(model, 0);
  const inference = (lr0.evaluate(x, y, {batchSize: SAMPLES}) as tf.Scalar).dataSync()[0];
  const history = await lr0.fit(x, y, {batchSize: SAMPLES, epochs: 1, verbose: 0, shuffle: false});
  expect(Math.abs(history.history.loss[0] as number - inference)).toBeLessThan(1e-6 * inference);
}

const freezers: Array<{name: string; make: (kind: Kind) => {frozen: tfl.layers.Layer; unfreeze: () => void;
    norm: BatchNormLayer}}> = [
  {name: 'the layer itself', make: (kind) => {
    const {model, norm} = base(kind);
    norm.trainable = false;
    return {frozen: model, norm, unfreeze: () => { norm.trainable = true; }};
  }},
  {name: 'a Sequential base frozen after build', make: (kind) => {
    const {model, norm} = base(kind);
    model.trainable = false;
    return {frozen: model, norm, unfreeze: () => { model.trainable = true; }};
  }},
  {name: 'a functional base frozen after build', make: (kind) => {
    const norm = normLayer(kind);
    const input = tfl.input({shape: [FEATURES]});
    const model = tfl.model({inputs: input, outputs: norm.apply(
        tfl.layers.dense({units: FEATURES}).apply(input)) as tfl.SymbolicTensor});
    model.trainable = false;
    return {frozen: model, norm, unfreeze: () => { model.trainable = true; }};
  }},
  {name: 'a base nested two deep, the outer one frozen', make: (kind) => {
    const {model: inner, norm} = base(kind);
    const middle = tfl.sequential({layers: [inner, tfl.layers.dense({units: FEATURES})]});
    middle.trainable = false;
    return {frozen: middle, norm, unfreeze: () => { middle.trainable = true; }};
  }},
  {name: 'a base frozen before it was built', make: (kind) => {
    const norm = normLayer(kind);
    const model = tfl.sequential();
    model.trainable = false;
    model.add(tfl.layers.dense({inputShape: [FEATURES], units: FEATURES}));
    model.add(norm);
    return {frozen: model, norm, unfreeze: () => { model.trainable = true; }};
  }},
  {name: 'a frozen base holding a layer without gamma and beta', make: (kind) => {
    const {model, norm} = base(kind, {center: false, scale: false});
    model.trainable = false;
    return {frozen: model, norm, unfreeze: () => { model.trainable = true; }};
  }},
];

describe('frozen base models under fit (TF2 Keras: inference mode, statistics fixed)', () => {
  for (const kind of ['BN', 'BRN'] as Kind[]) {
    for (const {name, make} of freezers) {
      it(`${kind}: ${name}; unfrozen again, it trains`, async () => {
        const {frozen, norm, unfreeze} = make(kind);
        const {x, y} = data();
        const model = outer(frozen);
        const before = statistics(norm);
        const headBefore = headKernel(model);
        await model.fit(x, y, {batchSize: 8, epochs: 2, verbose: 0});
        expect(statistics(norm)).toEqual(before);
        expect(headKernel(model)).not.toEqual(headBefore);
        await trainingLossEqualsInference(frozen as tfl.LayersModel, x, y);
        expect(norm.frozenByContainer).toBeNull();

        unfreeze();
        const trained = outer(frozen);
        await trained.fit(x, y, {batchSize: 8, epochs: 1, verbose: 0});
        const after = statistics(norm);
        expect(after.every((values, i) => values.some((v, j) => v !== before[i][j]))).toBe(true);
        tf.dispose([x, y]);
      });
    }
  }

  it('fitDataset, with verbose 0 and 1, keeps a frozen nested base\'s statistics', async () => {
    const {model, norm} = frozenTwoDeep();
    const {x, y} = data();
    const before = statistics(norm);
    for (const verbose of [0, 1] as const) {
      const dataset = tfd.zip({xs: tfd.array(tf.unstack(x)), ys: tfd.array(tf.unstack(y))}).batch(8);
      await model.fitDataset(dataset as tfd.Dataset<{xs: tf.Tensor; ys: tf.Tensor}>, {epochs: 1, verbose});
    }
    expect(statistics(norm)).toEqual(before);
    tf.dispose([x, y]);
  });
});

describe('frozen bases with trainOnBatch and a custom loop', () => {
  it('a base frozen one level up: trainOnBatch and optimizer.minimize use inference mode, no helper needed', async () => {
    const {model: frozen, norm} = base('BN');
    frozen.trainable = false;
    const model = outer(frozen);
    const {x, y} = data();
    const before = statistics(norm);
    await model.trainOnBatch(x, y);
    const optimizer = tf.train.sgd(0.1);
    optimizer.minimize(() => tf.losses.meanSquaredError(y, model.apply(x, {training: true}) as tf.Tensor));
    expect(statistics(norm)).toEqual(before);
    const training = model.apply(x, {training: true}) as tf.Tensor;
    const inference = model.predict(x) as tf.Tensor;
    expect(Array.from(training.dataSync())).toEqual(Array.from(inference.dataSync()));
    tf.dispose([x, y, training, inference]);
    optimizer.dispose();
  });

  it('nested two deep: markFrozenLayers before trainOnBatch, and again after unfreezing', async () => {
    const {model, middle, norm} = frozenTwoDeep();
    const {x, y} = data();
    const before = statistics(norm);
    markFrozenLayers(model);
    await model.trainOnBatch(x, y);
    expect(statistics(norm)).toEqual(before);
    middle.trainable = true;
    markFrozenLayers(model);
    await model.trainOnBatch(x, y);
    expect(statistics(norm)).not.toEqual(before);
    clearFrozenLayers(model);
    expect(norm.frozenByContainer).toBeNull();
    tf.dispose([x, y]);
  });
});

describe('parameter counts of a frozen base', () => {
  it('model.summary() counts equal tfjs\'s for the same model with its built-in BatchNormalization', () => {
    const counts = (norm: tfl.layers.Layer) => {
      const inner = tfl.sequential({layers: [tfl.layers.dense({inputShape: [FEATURES], units: FEATURES}), norm]});
      const middle = tfl.sequential({layers: [inner]});
      middle.trainable = false;
      const model = outer(middle);
      const lines: string[] = [];
      model.summary(undefined, undefined, (line: string) => lines.push(line));
      return lines.filter((line) => /params:/.test(line));
    };
    const ours = counts(new BatchNormLayer());
    expect(ours).toEqual(counts(tfl.layers.batchNormalization()));
    // Frozen: only the head (4 + 1) trains; dense 20 + gamma/beta 8 + moving 8 do not.
    expect(ours).toEqual(['Total params: 41', 'Trainable params: 5', 'Non-trainable params: 36']);
  });
});

describe('no leaks', () => {
  it('fit of a model with a frozen base leaves no tensors behind', async () => {
    const {model: frozen} = base('BRN');
    frozen.trainable = false;
    const model = outer(frozen);
    const {x, y} = data();
    await model.fit(x, y, {batchSize: 8, epochs: 1, verbose: 0});
    const before = tf.memory().numTensors;
    await model.fit(x, y, {batchSize: 8, epochs: 1, verbose: 0});
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, y]);
  });
});
