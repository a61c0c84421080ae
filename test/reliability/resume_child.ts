/**
 * The fresh process of resume.test.ts:
 *   node -r esbuild-register resume_child.ts <from dir> <to dir> <first step> <end step> [reset-step]
 * loads the model saved in <from dir>, trains steps [first, end) and saves it
 * to <to dir>. `reset-step` zeroes BatchRenorm's saved warm-up step after
 * loading (the test's negative control).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchRenormLayer} from '../../src';
import {fileSystem} from '../../src/io/file_system';
import {compileForResume, trainSteps} from './resume';

async function main(): Promise<void> {
  const [from, to, first, end, reset] = process.argv.slice(2);
  tf.env().set('IS_TEST', true);
  await tf.setBackend('cpu');
  const model = await tfl.loadLayersModel(fileSystem(from));
  compileForResume(model);
  if (reset === 'reset-step') {
    const brn = model.getLayer('brn') as BatchRenormLayer;
    brn.renormStep!.write(tf.scalar(0));
  }
  await trainSteps(model, Number(first), Number(end));
  await model.save(fileSystem(to));
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
