/**
 * The composite kernels as the wasm backend runs them (registered lazily by
 * src/kernels/registry.ts) against the fused cpu kernels; statistics of badly
 * centred inputs and leaks on wasm.
 */
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import {runKernel} from '../../src/kernels/registry';
import {
  ALL_CASES, expectAccurateStatistics, expectNoLeaks, LEAK_LAYERS, OFFSET_SHAPES, outputsOf,
} from '../helpers/kernel_cases';
import {maxRelError} from '../helpers/reference';

const activeKernel = (name: string) => (inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap) =>
  runKernel(name, inputs, attrs as unknown as Record<string, unknown>);

describe('composite kernels on wasm agree with the fused cpu kernels (<= 1e-5 relative)', () => {
  const onCpu = new Map<string, Float32Array[]>();
  beforeAll(async () => {
    await tf.setBackend('cpu');
    for (const c of ALL_CASES) onCpu.set(c.label, outputsOf(c, activeKernel(c.kernel)));
    // IS_TEST's kernel leak check fails inside tfjs's own wasm kernels (test/setup.ts).
    tf.env().set('IS_TEST', false);
    await tf.setBackend('wasm');
  });
  afterAll(async () => {
    tf.env().set('IS_TEST', true);
    await tf.setBackend('cpu');
  });

  for (const c of ALL_CASES) {
    it(c.label, () => {
      expect(tf.getBackend()).toBe('wasm');
      const wasm = outputsOf(c, activeKernel(c.kernel));
      const cpu = onCpu.get(c.label)!;
      expect(wasm.length).toBe(cpu.length);
      wasm.forEach((values, i) => expect(maxRelError(values, cpu[i])).toBeLessThanOrEqual(1e-5));
    });
  }
});

describe('on wasm', () => {
  beforeAll(async () => {
    tf.env().set('IS_TEST', false);
    await tf.setBackend('wasm');
  });
  afterAll(async () => {
    tf.env().set('IS_TEST', true);
    await tf.setBackend('cpu');
  });

  it.each(OFFSET_SHAPES)('statistics of mean-1e4, unit-variance inputs within 1e-3 of float64, shape %j axis %d',
      (shape, axis) => expectAccurateStatistics(shape, axis));

  it.each(LEAK_LAYERS)('no tensor leaks over many training and inference steps: %s', (_name, make) =>
    expectNoLeaks(make()));
});
