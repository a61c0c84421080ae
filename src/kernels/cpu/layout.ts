/**
 * How the fused cpu kernels walk a tensor: the [outer, channels, inner] view
 * (../view.ts) with outer split into samples × rows, and statistics kept per
 * (set, group), index `stat = (sample mod sets)·groups + groupOf[channel]`.
 * Batch norm has one sample (the whole batch), one set and one channel per
 * group; group norm N samples, each its own set, and C/G consecutive channels
 * per group; ghost batch norm N samples in N/v sets (sample i belongs to ghost
 * batch i mod N/v, as tf.keras reshapes [N, ...] to [v, N/v, ...]) and one
 * channel per group. The values of one (sample, row, channel) are a contiguous
 * run of `inner` (one value for channels-last), so no loop divides.
 */
import {channelView} from '../view';

export interface Layout {
  samples: number;
  /** Rows of the view per sample: outer / samples. */
  rows: number;
  channels: number;
  inner: number;
  /** Samples sharing statistics are those equal modulo `sets`; sets divides samples. */
  sets: number;
  groups: number;
  /** Channels per group: channels / groups. */
  groupSize: number;
  /** The group of each channel. */
  groupOf: Int32Array;
  /** The tensor's channel count: channel k of the layout is the tensor's channel k mod channelCycle. */
  channelCycle: number;
}

export interface LayoutOptions {
  /** Group norm: statistics per (sample, group of C/groups channels). */
  groups?: number;
  /** Ghost batch norm: statistics per (ghost batch, channel), N/v ghost batches. */
  virtualBatchSize?: number;
}

/** Layout of `shape` with channel axis `axis` (non-negative); without options, batch norm's. */
export function layoutOf(shape: readonly number[], axis: number, options: LayoutOptions = {}): Layout {
  const {outer, channels, inner} = channelView(shape, axis);
  const {groups, virtualBatchSize} = options;
  if (virtualBatchSize != null && outer === shape[0]) {
    // Ghost batches as merged channels of the free view [v, (N/v)·C, inner]: batch norm's walk.
    const merged = (shape[0] / virtualBatchSize) * channels;
    const groupOf = new Int32Array(merged);
    for (let c = 0; c < merged; c++) groupOf[c] = c;
    return {samples: 1, rows: virtualBatchSize, channels: merged, inner, sets: 1, groups: merged, groupSize: 1,
      groupOf, channelCycle: channels};
  }
  const perSample = groups != null || virtualBatchSize != null;
  const samples = perSample ? shape[0] : 1;
  const sets = virtualBatchSize != null ? samples / virtualBatchSize : samples;
  const groupCount = groups ?? channels;
  const groupSize = channels / groupCount;
  const groupOf = new Int32Array(channels);
  for (let c = 0; c < channels; c++) groupOf[c] = Math.floor(c / groupSize);
  return {samples, rows: outer / samples, channels, inner, sets, groups: groupCount, groupSize, groupOf,
    channelCycle: channels};
}

/** Per-channel values of the tensor repeated over the layout's channels (a copy only for merged ghost channels). */
export function perLayoutChannel<T extends Float32Array | Float64Array>(values: T, layout: Layout): T {
  if (layout.channelCycle === layout.channels) return values;
  const out = new (values.constructor as new (length: number) => T)(layout.channels);
  for (let c = 0; c < layout.channels; c++) out[c] = values[c % layout.channelCycle];
  return out;
}

/** Per-layout-channel sums added up per channel of the tensor. */
export function perTensorChannel(values: Float64Array, layout: Layout): Float64Array {
  if (layout.channelCycle === layout.channels) return values;
  const out = new Float64Array(layout.channelCycle);
  for (let c = 0; c < layout.channels; c++) out[c % layout.channelCycle] += values[c];
  return out;
}

/** Values behind each (set, group) statistic. */
export function valuesPerStatistic(layout: Layout): number {
  return (layout.samples / layout.sets) * layout.rows * layout.inner * layout.groupSize;
}

/** Values in one sample's contiguous block. */
export function sampleSize(layout: Layout): number {
  return layout.rows * layout.channels * layout.inner;
}

/** Index of the first statistic of `sample`'s set. */
export function firstStatistic(layout: Layout, sample: number): number {
  return (sample % layout.sets) * layout.groups;
}
