/**
 * The main entry alone (no tfjs-normalization/node, no tfjs-node) in Node:
 * file:// fails naming the entry point to import, where tfjs alone fails with
 * "TypeError: fetch failed" (load) or "Cannot find any save handlers" (save).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '../../src';

describe('file:// with only the main entry', () => {
  it('load and save fail naming tfjs-normalization/node, and nothing is allocated', async () => {
    const tensors = tf.memory().numTensors;
    await expect(tfl.loadLayersModel('file:///tmp/no-such-model/model.json')).rejects.toThrow(
        "Cannot load file:///tmp/no-such-model/model.json: no file:// handler is registered in this Node process. " +
        "Import 'tfjs-normalization/node'");
    expect(tf.memory().numTensors).toBe(tensors);
    const model = tfl.sequential({layers: [tfl.layers.dense({units: 1, inputShape: [2]})]});
    await expect(model.save('file:///tmp/no-such-model')).rejects.toThrow(
        /Cannot save file:\/\/\/tmp\/no-such-model: .*'tfjs-normalization\/node'/);
    model.dispose();
  });

  it('gives way to another file:// router registered later (tfjs-node), and leaves other schemes alone', () => {
    const other: tf.io.IOHandler = {load: async () => ({})};
    tf.io.registerLoadRouter(((url: string) => url.startsWith('file://') ? other : null) as never);
    expect(tf.io.getLoadHandlers('file:///tmp/m/model.json')).toEqual([other]);
    expect(tf.io.getLoadHandlers('indexeddb://m')).toEqual([]);
  });
});
