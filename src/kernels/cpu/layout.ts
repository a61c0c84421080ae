/**
 * How the fused cpu kernels walk a tensor: the [outer, channels, inner] view
 * (../view.ts) with outer split into samples × rows, and statistics kept per
 * (sample, group), index `stat = sample·groups + groupOf[channel]`. Batch norm
 * has one sample and one channel per group; group norm N samples and C/G
 * consecutive channels per group. The values of one (sample, row, channel) are
 * a contiguous run of `inner` (one value for channels-last), so no loop divides.
 */
import {channelView} from '../view';

export interface Layout {
  samples: number;
  /** Rows of the view per sample: outer / samples. */
  rows: number;
  channels: number;
  inner: number;
  groups: number;
  /** Channels per group: channels / groups. */
  groupSize: number;
  /** The group of each channel. */
  groupOf: Int32Array;
}

/** Layout of `shape` with channel axis `axis` (non-negative); `groups` splits it by sample and channel group. */
export function layoutOf(shape: readonly number[], axis: number, groups?: number): Layout {
  const {outer, channels, inner} = channelView(shape, axis);
  const samples = groups == null ? 1 : shape[0];
  const groupCount = groups ?? channels;
  const groupSize = channels / groupCount;
  const groupOf = new Int32Array(channels);
  for (let c = 0; c < channels; c++) groupOf[c] = Math.floor(c / groupSize);
  return {samples, rows: outer / samples, channels, inner, groups: groupCount, groupSize, groupOf};
}

/** Values behind each (sample, group) statistic. */
export function valuesPerStatistic(layout: Layout): number {
  return layout.rows * layout.inner * layout.groupSize;
}

/** Values in one sample's contiguous block. */
export function sampleSize(layout: Layout): number {
  return layout.rows * layout.channels * layout.inner;
}
