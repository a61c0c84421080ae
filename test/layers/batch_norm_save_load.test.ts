import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer} from '../../src';
import {randomData} from '../helpers/reference';
import {expectIdenticalWeights, roundTrip} from '../helpers/round_trip';

describe('BatchNormLayer save and load', () => {
  it('Dense → BatchNormLayer: trained with fit, reloaded bit-identical, same predictions', async () => {
    const model = tfl.sequential();
    model.add(tfl.layers.dense({units: 6, inputShape: [4]}));
    model.add(new BatchNormLayer({momentum: 0.8, unbiasedVariance: true}));
    model.add(tfl.layers.dense({units: 2}));
    model.compile({optimizer: 'adam', loss: 'meanSquaredError'});
    const xs = tf.tensor(randomData(64, 41, 2, 3), [16, 4]);
    await model.fit(xs, tf.tensor(randomData(32, 43), [16, 2]), {epochs: 3, batchSize: 8, verbose: 0});
    const bn = model.layers[1] as BatchNormLayer;
    // Training moved the statistics away from their initial values.
    expect(Array.from(bn.movingMean.read().dataSync()).some((v) => v !== 0)).toBe(true);

    const {loaded, artifacts} = await roundTrip(model);
    const names = artifacts.weightSpecs!.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining([
      `${bn.name}/gamma`, `${bn.name}/beta`, `${bn.name}/moving_mean`, `${bn.name}/moving_variance`,
    ]));
    const loadedBn = loaded.layers[1];
    expect(loadedBn).toBeInstanceOf(BatchNormLayer);
    expect(loadedBn.getConfig()).toEqual(bn.getConfig());
    expectIdenticalWeights(model, loaded);
    const a = (model.predict(xs) as tf.Tensor).dataSync();
    const b = (loaded.predict(xs) as tf.Tensor).dataSync();
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  it('Conv2D → BatchNormLayer (channels-last and channels-first): reloaded bit-identical', async () => {
    for (const axis of [-1, 1]) {
      const model = tfl.sequential();
      model.add(tfl.layers.conv2d({
        filters: 3, kernelSize: 3, padding: 'same', inputShape: axis === 1 ? [2, 6, 6] : [6, 6, 2],
        dataFormat: axis === 1 ? 'channelsFirst' : 'channelsLast',
      }));
      model.add(new BatchNormLayer({axis}));
      model.add(tfl.layers.flatten());
      model.add(tfl.layers.dense({units: 1}));
      model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
      const shape = axis === 1 ? [4, 2, 6, 6] : [4, 6, 6, 2];
      const xs = tf.tensor(randomData(288, 45 + axis, 1, 2), shape);
      await model.fit(xs, tf.ones([4, 1]), {epochs: 2, batchSize: 2, verbose: 0});
      const {loaded} = await roundTrip(model);
      expectIdenticalWeights(model, loaded);
      expect(Array.from((loaded.predict(xs) as tf.Tensor).dataSync()))
          .toEqual(Array.from((model.predict(xs) as tf.Tensor).dataSync()));
    }
  });

  it('is registered under its className once the package is imported', () => {
    const entry = tf.serialization.SerializationMap.getMap().classNameMap['BatchNormLayer'];
    expect(entry[0]).toBe(BatchNormLayer);
  });
});
