/**
 * keras-contrib's InstanceNormalization (keras_contrib/layers/normalization/
 * instancenormalization.py), so that the older GAN and style-transfer models
 * saved with it load with its exact formula.
 *
 *   y = γ · (x − μ) / (σ + ε) + β
 *
 * μ and σ (the biased standard deviation, Keras's `K.std`) are taken per
 * sample over every axis except the batch axis and `axis`; `axis: null` (the
 * keras-contrib default) takes them over everything but the batch axis and
 * learns one γ and one β of shape [1]. ε is added to the standard deviation,
 * not to the variance: that is what keras-contrib computes, and it is why this
 * is a class of its own rather than GroupNormLayer with one group per channel
 * (TF Addons' InstanceNormalization, which adds ε to the variance; the two
 * differ by up to 2.3e-3 on a real model's weights, SPEC section 8).
 *
 * keras-contrib's GroupNormalization (config keys `groups`, `axis`, `epsilon`,
 * `center`, `scale` and the beta/gamma keys, ε on the variance) has the same
 * class name and formula as Keras's, so it loads as GroupNormLayer.
 *
 * The computation uses tfjs ops and tfjs's automatic gradients (no fused
 * kernel): the statistics are per sample, so training and inference compute
 * the same thing and there are no moving statistics.
 *
 * Registered under `InstanceNormalization` on import, unless tfjs or another
 * module already registered that name.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {registeredClass} from '../tfjs_internals';
import {configError} from './config';
import {NormalizationLayer, NormalizationLayerArgs} from './normalization_layer';

export interface KerasContribInstanceNormalizationArgs extends Omit<NormalizationLayerArgs, 'axis'> {
  /**
   * The axis that keeps its own statistics and its own γ, β (the channel axis);
   * negative counts from the end. Default null (keras-contrib's): statistics
   * over all non-batch axes and γ, β of shape [1]. Never 0 (the batch axis).
   */
  axis?: number | null;
  /** Added to the standard deviation (not the variance). Default 1e-3 (keras-contrib). */
  epsilon?: number;
}

export class KerasContribInstanceNormalization extends NormalizationLayer {
  static override className = 'InstanceNormalization';

  /** True for `axis: null`: one set of statistics per sample and γ, β of shape [1]. */
  readonly layerWide: boolean;

  /**
   * @throws NormalizationConfigError for a bad axis, epsilon, center, scale or
   *   initializer/regularizer/constraint; Error for an unknown config key.
   */
  constructor(args: KerasContribInstanceNormalizationArgs = {}) {
    super({...args, axis: args.axis ?? -1} as NormalizationLayerArgs);
    this.layerWide = args.axis == null;
  }

  /**
   * As the shared base, except that `axis: null` builds γ and β of shape [1];
   * an integer axis needs a rank >= 3 input (keras-contrib: "Cannot specify
   * axis for rank 1 tensor"), since otherwise nothing is left to average over.
   */
  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    if (!this.layerWide || shape.length < 2) {
      if (shape.length === 2) {
        throw configError(this.describeLayer(), 'axis', this.axis, `for input shape [${shape.join(', ')}] ` +
            'each sample has one value per channel, so per-channel statistics are undefined; use axis null');
      }
      super.build(inputShape);
      return;
    }
    // The base builds γ and β of shape [size of the channel axis]: give it a one-channel shape.
    super.build([shape[0] ?? null, 1]);
    this.inputSpec = [{ndim: shape.length}];
  }

  protected override normalize(x: tf.Tensor): tf.Tensor {
    const axes: number[] = [];
    for (let i = 1; i < x.rank; i++) if (this.layerWide || i !== this.channelAxis) axes.push(i);
    const mean = tf.mean(x, axes, true);
    const centered = tf.sub(x, mean);
    const std = tf.sqrt(tf.mean(tf.square(centered), axes, true));
    let y = tf.div(centered, tf.add(std, this.epsilon));
    const broadcast = x.shape.map((size, i) => (!this.layerWide && i === this.channelAxis ? size : 1));
    const gamma = this.gammaValue();
    const beta = this.betaValue();
    if (gamma != null) y = tf.mul(y, tf.reshape(gamma, broadcast));
    if (beta != null) y = tf.add(y, tf.reshape(beta, broadcast));
    return y;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), axis: this.layerWide ? null : this.axis};
  }
}

if (registeredClass(KerasContribInstanceNormalization.className) == null) {
  tf.serialization.registerClass(KerasContribInstanceNormalization);
}
