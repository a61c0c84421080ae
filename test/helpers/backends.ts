/**
 * Runs the enclosing describe block on another backend and restores cpu after.
 * On wasm, IS_TEST is turned off: its kernel leak check fails inside tfjs's own
 * wasm kernels (see test/setup.ts).
 */
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';

export function useBackend(backend: string): void {
  beforeAll(async () => {
    tf.env().set('IS_TEST', backend !== 'wasm');
    await tf.setBackend(backend);
  });
  afterAll(async () => {
    tf.env().set('IS_TEST', true);
    await tf.setBackend('cpu');
  });
}
