/**
 * Groups of one value (issue 11, item 6). Group normalization of a group that
 * holds one value per sample gives (x − x)/√ε·γ + β = β whatever x (Wu & He's
 * formula with a group size of 1), so the layer outputs a constant and the
 * model cannot learn. The layers refuse it: at build when the group size and
 * the positions are known, at call otherwise.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  AddonsGroupNormalization, AddonsInstanceNormalization, GroupNormLayer, groupNorm, instanceNorm,
  NormalizationConfigError,
} from '../../src';

const WHY = /each group holds one value per sample .*every output would be beta whatever the input/;
const REMEDY = /Use fewer groups \(groups: 1 is layer normalization, as tf.layers.layerNormalization\), or BatchNormLayer/;

function expectOneValueError(action: () => unknown): void {
  let error: unknown;
  try {
    action();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(NormalizationConfigError);
  expect((error as NormalizationConfigError).field).toBe('groups');
  expect((error as Error).message).toMatch(WHY);
  expect((error as Error).message).toMatch(REMEDY);
}

describe('a group of one value per sample is refused at build', () => {
  const cases: Array<{name: string; layer: () => tfl.layers.Layer}> = [
    {name: 'instanceNorm()', layer: () => instanceNorm()},
    {name: 'groupNorm({groups: C})', layer: () => groupNorm({groups: 8})},
    {name: 'groupNorm({groups: -1})', layer: () => groupNorm({groups: -1})},
    {name: 'AddonsInstanceNormalization', layer: () => new AddonsInstanceNormalization()},
    {name: 'AddonsGroupNormalization({groups: C})', layer: () => new AddonsGroupNormalization({groups: 8})},
  ];
  for (const {name, layer} of cases) {
    it(`${name} after Dense(8)`, () => {
      const model = tfl.sequential({layers: [tfl.layers.dense({inputShape: [4], units: 8})]});
      const before = tf.memory().numTensors;
      expectOneValueError(() => model.add(layer()));
      // The failed build leaves no weights behind (the Dense's kernel and bias stay).
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('channels-first [N, C, 1]: one channel per group times one position', () => {
    expectOneValueError(() => new GroupNormLayer({axis: 1, groups: 4}).apply(tfl.input({shape: [4, 1]})));
  });

  it('a group of one channel over a known spatial size > 1 builds, and so does a group of two channels', () => {
    expect(() => instanceNorm().apply(tfl.input({shape: [3, 8]}))).not.toThrow();
    expect(() => groupNorm({groups: 4}).apply(tfl.input({shape: [8]}))).not.toThrow();
  });
});

describe('an unknown spatial size is checked at call', () => {
  it('instanceNorm on [null, C]: a call with 1 position throws, one with 5 positions normalizes', () => {
    const layer = instanceNorm();
    layer.apply(tfl.input({shape: [null, 4]}));
    const x = tf.randomNormal([2, 1, 4]);
    expectOneValueError(() => layer.apply(x));
    const wide = tf.tensor3d([[[1, 2, 3, 4], [2, 3, 4, 5], [0, 1, 0, 1], [5, 5, 5, 6], [1, 0, 2, 0]]]);
    const y = layer.apply(wide) as tf.Tensor;
    // Float64 reference: each channel standardized over its 5 positions (γ = 1, β = 0, ε = 1e-3).
    const data = wide.arraySync()[0];
    const expected = data.map((row) => row.map((v, c) => {
      const column = data.map((r) => r[c]);
      const mean = column.reduce((a, b) => a + b, 0) / column.length;
      const variance = column.reduce((a, b) => a + (b - mean) ** 2, 0) / column.length;
      return (v - mean) / Math.sqrt(variance + 1e-3);
    }));
    const got = (y.arraySync() as number[][][])[0];
    got.forEach((row, p) => row.forEach((v, c) => expect(Math.abs(v - expected[p][c])).toBeLessThan(1e-5)));
    tf.dispose([x, wide, y]);
  });
});
