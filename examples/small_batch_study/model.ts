/**
 * The study's models: one architecture per `--model`, with the normalization
 * layer under test after each hidden Dense/Conv2D and before its ReLU. Every
 * weighted layer has a seeded initializer, so every normalization variant
 * starts from the same weights.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNorm, batchRenorm, groupNorm} from 'tfjs-normalization';

export type Architecture = 'mlp' | 'cnn';

export interface Variant {
  /** Key used in flags and the JSON results. */
  key: string;
  /** Label in the table and the chart. */
  label: string;
  /** The normalization layer for `channels` features, or null for none. */
  make: ((channels: number, arch: Architecture) => tfl.layers.Layer) | null;
  /** How it is configured, for the report. */
  settings: string;
}

/** The paper's final limits, as Keras users set `renorm_clipping`. */
const RENORM_CLIPPING = {rmax: 3, rmin: 1 / 3, dmax: 5};

/** GroupNormLayer's group size: 16 features after a Dense layer, 4 channels after a Conv2D layer. */
function channelsPerGroup(arch: Architecture): number {
  return arch === 'mlp' ? 16 : 4;
}

export const VARIANTS: Variant[] = [
  {key: 'none', label: 'no normalization', make: null, settings: 'Dense → ReLU'},
  {
    key: 'tfjs', label: 'tfjs BatchNormalization', make: () => tfl.layers.batchNormalization({}),
    settings: 'tf.layers.batchNormalization defaults: momentum 0.99, epsilon 1e-3',
  },
  {
    key: 'batchNorm', label: 'BatchNormLayer', make: () => batchNorm(),
    settings: 'defaults: momentum 0.99, epsilon 1e-3',
  },
  {
    key: 'batchRenorm', label: 'BatchRenormLayer',
    make: () => batchRenorm({renormClipping: RENORM_CLIPPING}),
    settings: 'renormClipping {rmax: 3, rmin: 1/3, dmax: 5} from the first step (no warm-up), ' +
        'renormMomentum 0.99, momentum 0.99, epsilon 1e-3',
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

export function buildModel(variant: Variant, shape: ModelShape, seed: number): tfl.LayersModel {
  let layerSeed = seed;
  const init = () => tfl.initializers.glorotUniform({seed: layerSeed++});
  const model = tfl.sequential();
  const normalized = (channels: number) => {
    if (variant.make != null) model.add(variant.make(channels, shape.arch));
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
