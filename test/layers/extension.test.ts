/**
 * The extension API of NormalizationLayer (issue 13): a build that fails
 * leaves the layer as if never built and can be retried; a subclass without
 * its own className fails in its constructor instead of taking over its
 * parent's registry entry; unknown config fields name the field and the one
 * probably meant; the resolved channel axis is a protected accessor.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  BatchNormLayer, GroupNormLayer, NormalizationConfigError, NormalizationLayer, NormalizationShapeError,
} from '../../src';

/** What a layer that was never built looks like from outside. */
function expectUnbuilt(layer: tfl.layers.Layer): void {
  expect(layer.built).toBe(false);
  expect(layer.weights).toEqual([]);
  expect(layer.trainableWeights).toEqual([]);
  expect(layer.nonTrainableWeights).toEqual([]);
  expect(layer.inputSpec).toBeNull();
  expect(layer.losses).toEqual([]);
}

function caught(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('retry-safe build', () => {
  it('GroupNorm: groups that do not divide the channels leave no weight behind; a good shape then builds', () => {
    const layer = new GroupNormLayer({name: 'gn', groups: 3, gammaRegularizer: 'l2'});
    const tensors = tf.memory().numTensors;
    expect(() => layer.apply(tfl.input({shape: [4]}))).toThrow(
        "GroupNormalization 'gn': the number of channels (4) must be a multiple of the number of groups (3).");
    expectUnbuilt(layer);
    expect(tf.memory().numTensors).toBe(tensors);
    layer.apply(tfl.input({shape: [6]}));
    expect(layer.weights.map((w) => [w.originalName, w.shape])).toEqual([['gn/gamma', [6]], ['gn/beta', [6]]]);
    expect(layer.losses).toHaveLength(1);
    const y = tf.tidy(() => Array.from((layer.apply(tf.ones([2, 6])) as tf.Tensor).dataSync()));
    expect(y).toEqual(new Array(12).fill(0));  // constant input normalizes to β = 0
    layer.dispose();
  });

  it('a bad axis leaves no input spec; a rank that fits it then builds', () => {
    const layer = new BatchNormLayer({name: 'bn', axis: 3});
    const error = caught(() => layer.apply(tfl.input({shape: [4]}))) as NormalizationConfigError;
    expect(error).toBeInstanceOf(NormalizationConfigError);
    expect([error.owner, error.field, error.value]).toEqual(["BatchNormLayer 'bn'", 'axis', 3]);
    expectUnbuilt(layer);
    layer.apply(tfl.input({shape: [2, 3, 5]}));
    expect(layer.inputSpec).toEqual([{ndim: 4, axes: {3: 5}}]);
    layer.dispose();
  });

  it('safety net: buildStatistics that throws after gamma and beta exist leaves nothing, and a retry works', () => {
    /** A variant that (wrongly) checks its shape in buildStatistics, after the base created gamma and beta. */
    class LateCheck extends BatchNormLayer {
      static override className = 'ExtensionTestLateCheck';
      protected override buildStatistics(inputShape: tfl.Shape, channels: number): void {
        if (channels > 4) throw new Error('at most 4 channels');
        super.buildStatistics(inputShape, channels);
      }
    }
    const layer = new LateCheck({name: 'late', gammaRegularizer: 'l2', betaRegularizer: 'l1'});
    const tensors = tf.memory().numTensors;
    expect(() => layer.apply(tfl.input({shape: [8]}))).toThrow('at most 4 channels');
    expectUnbuilt(layer);
    expect(layer.gamma).toBeNull();
    expect(layer.beta).toBeNull();
    expect(tf.memory().numTensors).toBe(tensors);
    layer.apply(tfl.input({shape: [3]}));
    expect(layer.weights.map((w) => w.originalName)).toEqual(
        ['late/gamma', 'late/beta', 'late/moving_mean', 'late/moving_variance']);
    // One loss per regularizer, each reading a live weight: 0.01·Σγ² with γ = 1, 0.01·Σ|β| with β = 0.
    expect(layer.losses.map((loss) => tf.tidy(() => (loss() as tf.Scalar).dataSync()[0]))).toEqual(
        [expect.closeTo(0.03, 6), 0]);
    layer.dispose();
  });
});

describe('the channel axis accessor', () => {
  class AxisProbe extends NormalizationLayer {
    static override className = 'ExtensionTestAxisProbe';
    seenInCheck: number | null = null;
    axisNow(): number {
      return this.channelAxis;
    }
    protected override checkInputShape(): void {
      this.seenInCheck = this.channelAxis;
    }
    protected override normalize(x: tf.Tensor): tf.Tensor {
      return tf.clone(x);
    }
  }

  it('is the non-negative axis from checkInputShape on, and an error before the build', () => {
    const layer = new AxisProbe({name: 'probe', axis: -2});
    expect(() => layer.axisNow()).toThrow("ExtensionTestAxisProbe 'probe': the channel axis is known only once");
    layer.apply(tfl.input({shape: [5, 3, 2]}));
    expect(layer.seenInCheck).toBe(2);
    expect(layer.axisNow()).toBe(2);
    layer.dispose();
  });
});

describe('a subclass needs its own className', () => {
  it('fails in the constructor, saying what to add, before the parent\'s registry entry is touched', () => {
    class Forgetful extends BatchNormLayer {}
    const registry = tf.serialization.SerializationMap.getMap().classNameMap;
    const entry = registry['BatchNormLayer'];
    const error = caught(() => new Forgetful()) as NormalizationConfigError;
    expect(error).toBeInstanceOf(NormalizationConfigError);
    expect([error.owner, error.field, error.value]).toEqual(['Forgetful', 'className', 'BatchNormLayer']);
    expect(error.message).toContain("Add `static className = 'Forgetful';` to the class (`static override className` in TypeScript)");
    expect(error.message).toContain('tf.serialization.registerClass(Forgetful)');
    expect(registry['BatchNormLayer']).toBe(entry);
    expect(entry[0]).toBe(BatchNormLayer);
  });

  it('also for a direct subclass of NormalizationLayer', () => {
    class Bare extends NormalizationLayer {
      protected override normalize(x: tf.Tensor): tf.Tensor {
        return x;
      }
    }
    const error = caught(() => new Bare()) as NormalizationConfigError;
    expect(error).toBeInstanceOf(NormalizationConfigError);
    expect([error.field, error.value]).toEqual(['className', undefined]);
  });
});

describe('unknown config fields', () => {
  const fieldError = (fn: () => unknown) => caught(fn) as NormalizationConfigError;

  it('a typo names the field and the one it probably meant, and nothing about tfjs internals', () => {
    const error = fieldError(() => new BatchNormLayer({name: 'bn', momentun: 0.9} as never));
    expect(error).toBeInstanceOf(NormalizationConfigError);
    expect([error.owner, error.field, error.value]).toEqual(["BatchNormLayer 'bn'", 'momentun', 0.9]);
    expect(error.message).toBe("BatchNormLayer 'bn': unknown config field 'momentun'; did you mean 'momentum'?");
  });

  it.each([
    [{epsilom: 1e-3}, 'epsilon'],
    [{moving_mean_initializer: 'zeros'}, 'movingMeanInitializer'],
    [{GammaRegularizer: null}, 'gammaRegularizer'],
    [{trainble: false}, 'trainable'],
    [{inputshape: [3]}, 'inputShape'],
  ])('%j: did you mean %s?', (config, meant) => {
    const error = fieldError(() => new BatchNormLayer(config as never));
    expect(error.field).toBe(Object.keys(config)[0]);
    expect(error.message).toMatch(new RegExp(`did you mean '${meant}'\\?$`));
  });

  it('a GroupNorm typo is matched against its own fields', () => {
    expect(fieldError(() => new GroupNormLayer({group: 2} as never)).message).toMatch(/did you mean 'groups'\?$/);
  });

  it('with nothing close, lists the fields a user sets, without tfjs internals or subclassing advice', () => {
    const error = fieldError(() => new GroupNormLayer({renorm: true} as never));
    expect([error.owner, error.field, error.value]).toEqual(['GroupNormalization', 'renorm', true]);
    expect(error.message).toBe("GroupNormalization: unknown config field 'renorm'; GroupNormalization takes axis, " +
        'epsilon, center, scale, betaInitializer, gammaInitializer, betaRegularizer, gammaRegularizer, ' +
        "betaConstraint, gammaConstraint, groups, and tfjs's Layer fields name, trainable, dtype, inputShape, " +
        'batchInputShape, batchSize.');
    for (const internal of ['customObjects', 'weights', 'inputDType', 'configFields']) {
      expect(error.message).not.toContain(internal);
    }
  });

  it('a config that is not an object is a NormalizationConfigError', () => {
    const error = fieldError(() => new BatchNormLayer([] as never));
    expect([error.owner, error.field]).toEqual(['BatchNormLayer', 'config']);
    expect(error.message).toBe('BatchNormLayer: config must be an object; received an array.');
  });

  it('keys tfjs itself passes (weights, inputDType, customObjects) are still accepted', () => {
    expect(() => new BatchNormLayer({inputDType: 'float32', customObjects: {}} as never)).not.toThrow();
  });
});

describe('build errors are typed', () => {
  it('rank < 2 and an undefined channel size are NormalizationShapeErrors naming the layer', () => {
    const rank1 = caught(() => new BatchNormLayer({name: 'bn'}).build([4])) as NormalizationShapeError;
    expect(rank1).toBeInstanceOf(NormalizationShapeError);
    expect([rank1.owner, rank1.argument]).toEqual(["BatchNormLayer 'bn'", 'input']);
    const unknown = caught(() => new BatchNormLayer({name: 'bn'}).build([null, null])) as NormalizationShapeError;
    expect(unknown).toBeInstanceOf(NormalizationShapeError);
  });
});
