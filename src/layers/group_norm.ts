/**
 * GroupNormLayer: Group Normalization (Wu & He 2018), Keras's `GroupNormalization`.
 *
 * What differs from batch normalization: the statistics are per sample, over a
 * group of C/G channels and all positions, so they do not depend on the batch:
 * no moving statistics, the same computation in training and inference, and
 * batch 1 works. groups = 1 normalizes each sample over all its features
 * (layer normalization); groups = -1 (one group per channel) is instance
 * normalization.
 *
 * The class name is Keras's, so Keras 3 models load; the `Addons>` aliases
 * below load TensorFlow Addons models.
 *
 * Reference: Y. Wu, K. He, "Group Normalization", ECCV 2018.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {groupNorm, resolveGroups} from '../kernels/group_norm';
import {NormalizationConfigError} from '../errors';
import {configError} from './config';
import {InferenceScaleOffset, NormalizationLayer, NormalizationLayerArgs} from './normalization_layer';

export interface GroupNormLayerArgs extends NormalizationLayerArgs {
  /** Groups the channels are split into; must divide the channel count. -1: one per channel. Default 32 (Keras). */
  groups?: number;
}

export class GroupNormLayer extends NormalizationLayer {
  static override className = 'GroupNormalization';
  static override configFields: readonly string[] = [...NormalizationLayer.configFields, 'groups'];

  /** Groups as configured (-1 = one per channel). */
  readonly groups: number;
  /** Groups resolved against the channel count; set by `build`. */
  protected groupCount = 0;

  constructor(args: GroupNormLayerArgs = {}) {
    super(args);
    const groups = args.groups ?? 32;
    if (!(Number.isInteger(groups) && (groups >= 1 || groups === -1))) {
      throw configError(this.describeLayer(), 'groups', groups,
          'expected a positive integer that divides the number of channels, or -1 for one group per channel');
    }
    this.groups = groups;
  }

  protected override checkInputShape(inputShape: tfl.Shape, channels: number): void {
    this.groupCount = resolveGroups(this.describeLayer(), this.groups, channels);
    this.checkValuesPerGroup(inputShape);
  }

  /**
   * A group holding one value per sample normalizes to 0, so the layer would
   * output β whatever the input (instance norm after Dense, `groups` = units);
   * Keras does so silently. Checked at build when the positions are known,
   * otherwise at call.
   * @throws NormalizationConfigError naming `groups` and the alternatives.
   */
  protected checkValuesPerGroup(shape: tfl.Shape | number[]): void {
    let positions = 1;
    for (let axis = 1; axis < shape.length; axis++) {
      if (axis === this.channelAxis) continue;
      const size = shape[axis];
      if (size == null) return;
      positions *= size;
    }
    const channelsPerGroup = shape[this.channelAxis] as number / this.groupCount;
    if (channelsPerGroup * positions !== 1) return;
    const name = this.describeLayer();
    throw new NormalizationConfigError(name, 'groups', this.groups,
        `${name}: each group holds one value per sample (${channelsPerGroup} channel x ${positions} position, ` +
        `input shape [${shape.map((size) => size ?? 'null').join(', ')}], groups ${this.groups}), so every ` +
        `output would be beta whatever the input. Use fewer groups (groups: 1 is layer normalization, as ` +
        `tf.layers.layerNormalization), or BatchNormLayer, which normalizes over the batch.`);
  }

  override inferenceScaleOffset(): InferenceScaleOffset {
    return {reason: `${this.getClassName()} uses per-sample statistics, which no kernel can absorb`};
  }

  // A mask passes through and the statistics ignore it, as Keras 3's GroupNormalization
  // (supports_masking = True; `def call(self, inputs):` takes no mask).
  protected override normalize(x: tf.Tensor): tf.Tensor {
    this.checkValuesPerGroup(x.shape);
    return groupNorm(x, this.gammaValue(), this.betaValue(),
        // Only y is used: nothing differentiates the statistics.
        {axis: this.channelAxis, groups: this.groupCount, epsilon: this.epsilon, statisticsGradients: false}).y;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), groups: this.groups};
  }
}
tf.serialization.registerClass(GroupNormLayer);

// tfjs names unnamed layers after their class name, and '>' is not allowed in weight names.
let aliasCount = 0;
const aliasName = (args: GroupNormLayerArgs, prefix: string) => args.name ?? `${prefix}_${++aliasCount}`;

/** TensorFlow Addons' GroupNormalization (its default is 2 groups). */
export class AddonsGroupNormalization extends GroupNormLayer {
  static override className = 'Addons>GroupNormalization';

  constructor(args: GroupNormLayerArgs = {}) {
    super({...args, groups: args.groups ?? 2, name: aliasName(args, 'addons_group_normalization')});
  }
}
tf.serialization.registerClass(AddonsGroupNormalization);

/** TensorFlow Addons' InstanceNormalization: one group per channel, whatever `groups` says (as in Addons). */
export class AddonsInstanceNormalization extends GroupNormLayer {
  static override className = 'Addons>InstanceNormalization';

  constructor(args: GroupNormLayerArgs = {}) {
    super({...args, groups: -1, name: aliasName(args, 'addons_instance_normalization')});
  }
}
tf.serialization.registerClass(AddonsInstanceNormalization);
