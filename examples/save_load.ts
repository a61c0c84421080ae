/**
 * Save a trained model and load it back with its moving statistics
 * (`npm run example:save-load`).
 *
 * `tfjs-normalization/node` adds a file-system IOHandler for Node (plain
 * tfjs has none without tfjs-node) and registers the `file://` scheme, so
 * `model.save('file://dir')` and `tf.loadLayersModel('file://dir/model.json')`
 * work as they do with tfjs-node. The files are tfjs's layers-model format:
 * model.json plus weights.bin with every weight, non-trainable ones included
 * (moving_mean, moving_variance, and the renorm statistics). Importing the
 * package registers its layer classes, which is all loading needs.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {batchNorm, batchRenorm, fileSystem, groupNorm} from 'tfjs-normalization/node';
import {runMain} from './run_main';

export interface SaveLoadOptions {
  /** Where to save; default a fresh temporary directory, removed afterwards. */
  dir: string | null;
  steps: number;
  log: (line: string) => void;
}

export interface SaveLoadResult {
  /** Every weight, by name, before saving and after loading. */
  saved: Record<string, Float32Array>;
  loaded: Record<string, Float32Array>;
  /** Inference-mode outputs of the trained and of the reloaded model on the same input. */
  before: Float32Array;
  after: Float32Array;
  files: string[];
}

export async function main(options: Partial<SaveLoadOptions> = {}): Promise<SaveLoadResult> {
  const {dir, steps, log} = {dir: null, steps: 20, log: console.log, ...options};
  await tf.setBackend('cpu');
  const model = tfl.sequential({layers: [
    tfl.layers.dense({inputShape: [6], units: 16, kernelInitializer: tfl.initializers.glorotUniform({seed: 1})}),
    batchNorm({name: 'batch_norm', momentum: 0.9}),
    tfl.layers.dense({units: 16, kernelInitializer: tfl.initializers.glorotUniform({seed: 2})}),
    batchRenorm({name: 'batch_renorm', momentum: 0.9, renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}}),
    tfl.layers.dense({units: 8, kernelInitializer: tfl.initializers.glorotUniform({seed: 3})}),
    groupNorm({name: 'group_norm', groups: 2}),
    tfl.layers.dense({units: 1, kernelInitializer: tfl.initializers.glorotUniform({seed: 4})}),
  ]});
  const optimizer = tf.train.adam(0.01);
  model.compile({optimizer, loss: 'meanSquaredError'});
  const x = tf.randomNormal([32, 6], 3, 2, 'float32', 7);
  const y = tf.mean(x, 1, true);
  // A few training steps move the moving statistics away from their initial 0 and 1.
  for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
  const before = tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync() as Float32Array);

  const target = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-normalization-'));
  try {
    // The file:// form, as with tfjs-node; `fileSystem(target)` is the same handler.
    await model.save(`file://${target}`);
    const files = fs.readdirSync(target).sort();
    log(`Saved to ${target}: ${files.join(', ')}`);
    const reloaded = await tfl.loadLayersModel(fileSystem(target));
    const after = tf.tidy(() => (reloaded.predict(x) as tf.Tensor).dataSync() as Float32Array);
    const values = (m: tfl.LayersModel) => Object.fromEntries(
        m.weights.map((w) => [w.originalName, w.read().dataSync() as Float32Array]));
    const saved = values(model);
    const loaded = values(reloaded);
    for (const name of Object.keys(saved).filter((n) => /\/(moving|renorm)_/.test(n))) {
      log(`  ${name}: [${Array.from(loaded[name].slice(0, 3), (v) => v.toFixed(4)).join(', ')}, ...]`);
    }
    const same = before.every((v, i) => Object.is(v, after[i]));
    log(`Predictions of the reloaded model are ${same ? 'bit-identical to' : 'DIFFERENT from'} the original's.`);
    reloaded.dispose();
    return {saved, loaded, before, after, files};
  } finally {
    if (dir == null) fs.rmSync(target, {recursive: true, force: true});
    tf.dispose([x, y]);
    model.dispose();
    optimizer.dispose();
  }
}

runMain(module, () => main());
