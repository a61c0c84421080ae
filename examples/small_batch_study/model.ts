/**
 * The study's models: one architecture per `--model`, with the normalization
 * layer under test after each hidden Dense/Conv2D and before its ReLU. Every
 * weighted layer has a seeded initializer, so every normalization variant
 * starts from the same weights.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNorm, batchRenorm, groupNorm, RenormWarmup} from 'tfjs-normalization';

export type Architecture = 'mlp' | 'cnn';

export interface Variant {
  /** Key used in flags and the JSON results. */
  key: string;
  /** Label in the table and the chart. */
  label: string;
  /**
   * The normalization layer for `channels` features, or null for none;
   * `steps` is the number of training steps of the run (for schedules).
   */
  make: ((channels: number, arch: Architecture, steps: number) => tfl.layers.Layer) | null;
  /** How it is configured, for the report. */
  settings: string;
  /**
   * After training, replace the moving statistics by the exact population
   * statistics of the training images (`recalibrateStatistics`, PreciseBN).
   */
  recalibrate?: boolean;
  /**
   * Key of a variant whose training this one repeats exactly (same layer
   * config, so the same trained model): when that variant ran at the same
   * batch size and seed, its saved model is reloaded instead of training again.
   */
  trainedAs?: string;
  /** Also evaluate in training mode (batch statistics) for the `training` flag table. */
  trainingModeTable?: boolean;
}

/** The paper's final limits, as Keras users set `renorm_clipping`. */
const RENORM_CLIPPING = {rmax: 3, rmin: 1 / 3, dmax: 5};

/**
 * The paper's warm-up (Ioffe 2017: plain BN for 5k steps, dmax 5 reached at
 * 25k, rmax 3 at 40k) scaled to a run of `steps` steps: the same proportions
 * 5 : 25 : 40, with rmax reaching its final value at half the run, so the
 * second half trains with the final limits.
 */
export function scaledRenormWarmup(steps: number): RenormWarmup {
  const rmaxReachedAt = Math.round(steps / 2);
  return {
    plainSteps: Math.round(rmaxReachedAt * 5 / 40),
    dmaxReachedAt: Math.round(rmaxReachedAt * 25 / 40),
    rmaxReachedAt,
  };
}

/** GroupNormLayer's group size: 16 features after a Dense layer, 4 channels after a Conv2D layer. */
function channelsPerGroup(arch: Architecture): number {
  return arch === 'mlp' ? 16 : 4;
}

export const VARIANTS: Variant[] = [
  {key: 'none', label: 'no normalization', make: null, settings: 'Dense → ReLU'},
  {
    key: 'tfjs', label: 'tfjs BatchNormalization', make: () => tfl.layers.batchNormalization({}),
    settings: 'tf.layers.batchNormalization defaults: momentum 0.99, epsilon 1e-3', trainingModeTable: true,
  },
  {
    key: 'batchNorm', label: 'BatchNormLayer', make: () => batchNorm(),
    settings: 'defaults: momentum 0.99, epsilon 1e-3', trainingModeTable: true,
  },
  {
    key: 'batchNormUnbiased', label: 'BatchNormLayer unbiased', make: () => batchNorm({unbiasedVariance: true}),
    settings: 'unbiasedVariance: true (the moving variance follows m/(m−1)·σ²_B, m = values per feature in a batch), ' +
        'otherwise defaults',
  },
  {
    key: 'preciseBN', label: 'BatchNormLayer + PreciseBN', make: () => batchNorm(), trainedAs: 'batchNorm',
    recalibrate: true,
    settings: 'BatchNormLayer defaults, then recalibrateStatistics over all the training images in one batch ' +
        '(μ = mean, σ² = unbiased variance of each feature over them)',
  },
  {
    key: 'batchRenorm', label: 'BatchRenormLayer',
    make: () => batchRenorm({renormClipping: RENORM_CLIPPING}),
    settings: 'renormClipping {rmax: 3, rmin: 1/3, dmax: 5} from the first step (no warm-up), ' +
        'renormMomentum 0.99, momentum 0.99, epsilon 1e-3',
  },
  {
    key: 'batchRenormWarmup', label: 'BatchRenormLayer warm-up',
    make: (_channels, _arch, steps) =>
      batchRenorm({renormClipping: RENORM_CLIPPING, renormWarmup: scaledRenormWarmup(steps)}),
    settings: 'renormClipping as above, reached through the paper\'s warm-up scaled to the run: plain BN for ' +
        'the first 1/16 of the steps, dmax 5 reached at 5/16, rmax 3 (rmin 1/3) at 1/2',
  },
  {
    key: 'groupNorm', label: 'GroupNormLayer',
    make: (channels, arch) => groupNorm({groups: channels / channelsPerGroup(arch)}),
    settings: 'groups of 16 features after Dense (8 groups for 128 units), of 4 channels after Conv2D ' +
        '(2 and 4 groups); epsilon 1e-3',
  },
];

export interface ModelShape {
  arch: Architecture;
  height: number;
  width: number;
  /** Units of each hidden Dense layer (mlp). */
  hidden: number;
}

/** Filters of the CNN's two Conv2D layers. */
export const CNN_FILTERS = [8, 16];

/** The model for one run; `steps` (training steps of the run) sizes the variant's schedule, if any. */
export function buildModel(variant: Variant, shape: ModelShape, seed: number, steps: number): tfl.LayersModel {
  let layerSeed = seed;
  const init = () => tfl.initializers.glorotUniform({seed: layerSeed++});
  const model = tfl.sequential();
  const normalized = (channels: number) => {
    if (variant.make != null) model.add(variant.make(channels, shape.arch, steps));
    model.add(tfl.layers.activation({activation: 'relu'}));
  };
  if (shape.arch === 'mlp') {
    model.add(tfl.layers.dense({
      inputShape: [shape.height * shape.width], units: shape.hidden, kernelInitializer: init(),
    }));
    normalized(shape.hidden);
    model.add(tfl.layers.dense({units: shape.hidden, kernelInitializer: init()}));
    normalized(shape.hidden);
  } else {
    for (const [i, filters] of CNN_FILTERS.entries()) {
      model.add(tfl.layers.conv2d({
        ...(i === 0 ? {inputShape: [shape.height, shape.width, 1]} : {}),
        filters, kernelSize: 3, padding: 'same', kernelInitializer: init(),
      }));
      normalized(filters);
      model.add(tfl.layers.maxPooling2d({poolSize: 2}));
    }
    model.add(tfl.layers.flatten());
  }
  model.add(tfl.layers.dense({units: 10, activation: 'softmax', kernelInitializer: init()}));
  return model;
}
