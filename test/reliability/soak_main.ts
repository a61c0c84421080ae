/**
 * `npm run soak`: 10,000 training steps of BN, BRN and GN side by side with
 * batch sizes cycling through 1..64 (see soak.ts). Exits non-zero on failure.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {MEAN, runSoak, STD} from './soak';

async function main(): Promise<void> {
  // Silences the cpu backend's tfjs-node advertisement.
  tf.env().set('IS_TEST', true);
  await tf.setBackend('cpu');
  // momentum 0.999: the moving statistics average about 1,000 steps, so at the end the
  // start value weighs 0.999^10000 ≈ 5e-5 and the batch-to-batch noise is well below 1e-2.
  const result = await runSoak({steps: 10000, momentum: 0.999, tolerance: 1e-2, log: (line) => console.log(line)});
  console.log(`\nnumTensors after warm-up ${result.tensorsAfterWarmup}, at the end ${result.tensorsAtEnd}; ` +
      `non-finite losses ${result.nonFiniteLosses}; final loss ${result.finalLoss.toFixed(5)}`);
  console.log('\nlayer  channel  moving mean  population  moving variance  population');
  for (const row of result.table) {
    console.log(`${row.layer.padEnd(5)}  ${String(row.channel).padEnd(7)}  ${row.mean.toFixed(5).padStart(11)}  ` +
        `${String(MEAN[row.channel]).padStart(10)}  ${row.variance.toFixed(5).padStart(15)}  ${String(STD[row.channel] ** 2).padStart(10)}`);
  }
  for (const [name, e] of Object.entries(result.errors)) {
    console.log(`${name}: worst relative error mean ${e.mean.toExponential(2)}, variance ${e.variance.toExponential(2)} ` +
        '(|moving − population| / max(1, |population|))');
  }
  if (result.failures.length > 0) {
    console.error(`\nSOAK FAILED:\n  ${result.failures.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log('\nSOAK PASSED');
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
