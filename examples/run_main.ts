/** Shared by the examples: run `main` when the file is executed directly, not when a test imports it. */
import * as tf from '@tensorflow/tfjs-core';

export function runMain(mod: NodeModule, main: () => Promise<unknown>): void {
  if (require.main !== mod) return;
  // Silences the cpu backend's advertisement for tfjs-node (IS_TEST would too, but it turns on
  // kernel leak checks that fail inside the wasm backend).
  tf.env().set('PROD', true);
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  });
}
