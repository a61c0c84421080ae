/** The compat run (compat/jest.config.js) really uses the oldest supported tfjs, one copy of it. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNorm} from 'tfjs-normalization';

const compat = require('./package.json');

it('runs on the tfjs versions compat/package.json pins', async () => {
  expect(tf.version_core).toBe(compat.dependencies['@tensorflow/tfjs-core']);
  expect(tfl.version_layers).toBe(compat.dependencies['@tensorflow/tfjs-layers']);
  expect(require.resolve('@tensorflow/tfjs-core')).toContain('/compat/node_modules/');
  // The layer built by the package is a tfjs-layers 4.6 Layer (one copy of tfjs-layers too).
  expect(batchNorm()).toBeInstanceOf(tfl.layers.Layer);
  await tf.ready();
  expect(tf.getBackend()).toBe('cpu');
});
