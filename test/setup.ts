// Every test file runs on the cpu backend unless it switches (see test/helpers/backends.ts).
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';

// Silences the cpu backend's tfjs-node advertisement. Test files that use the
// wasm backend turn it off again (it enables kernel leak checks that fail
// inside tfjs's own wasm fusedMatMul).
tf.env().set('IS_TEST', true);
