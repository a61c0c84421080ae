// Smoke check of an installed tfjs-normalization against whatever tfjs-core /
// tfjs-layers / tfjs-backend-cpu versions sit next to it: fused kernels,
// the three layers training, file:// save and load, and loading a Keras
// fixture. Used to find the oldest tfjs 4.x the package works with
// (compat/find-floor.sh); prints "smoke ok <version>" or throws.
// Usage: node smoke.cjs <path to test/fixtures/keras>
require('@tensorflow/tfjs-backend-cpu');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
const tfl = require('@tensorflow/tfjs-layers');
const norm = require('tfjs-normalization/node');

async function main(fixtures) {
  await tf.setBackend('cpu');
  // Fused kernels: training statistics against a float64 mean/variance.
  const x = tf.randomNormal([16, 5], 2, 3, 'float32', 1);
  const values = x.arraySync();
  const {y, mean, variance} = norm.batchNormTraining(x, null, null, {axis: 1, epsilon: 1e-3});
  const means = [0, 1, 2, 3, 4].map((c) => values.reduce((s, r) => s + r[c], 0) / 16);
  const vars = means.map((m, c) => values.reduce((s, r) => s + (r[c] - m) ** 2, 0) / 16);
  const got = {mean: mean.arraySync(), variance: variance.arraySync()};
  means.forEach((m, c) => {
    if (Math.abs(got.mean[c] - m) > 1e-4 || Math.abs(got.variance[c] - vars[c]) > 1e-3) {
      throw new Error(`kernel statistics wrong on channel ${c}`);
    }
  });
  tf.dispose([y, mean, variance]);

  const model = tfl.sequential({layers: [
    tfl.layers.dense({inputShape: [5], units: 8}),
    norm.batchNorm({name: 'bn'}),
    tfl.layers.dense({units: 8}),
    norm.batchRenorm({name: 'brn', renormClipping: {rmax: 3, rmin: 1 / 3, dmax: 5}}),
    tfl.layers.dense({units: 4}),
    norm.groupNorm({name: 'gn', groups: 2}),
    tfl.layers.dense({units: 1}),
  ]});
  model.compile({optimizer: 'adam', loss: 'meanSquaredError'});
  const target = tf.mean(x, 1, true);
  const history = await model.fit(x, target, {epochs: 3, batchSize: 4, verbose: 0});
  if (!history.history.loss.every(Number.isFinite)) throw new Error('training loss is not finite');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-norm-smoke-'));
  await model.save(`file://${dir}`);
  const loaded = await tfl.loadLayersModel(`file://${dir}/model.json`);
  const a = model.predict(x).dataSync();
  const b = loaded.predict(x).dataSync();
  if (a.some((v, i) => v !== b[i])) throw new Error('reloaded model predicts differently');
  fs.rmSync(dir, {recursive: true});

  const keras = await tfl.loadLayersModel(norm.fileSystem(path.join(fixtures, 'tf2_conv_bn')));
  const input = tf.ones([1, ...keras.inputs[0].shape.slice(1)]);
  const out = keras.predict(input).dataSync();
  if (!out.every(Number.isFinite)) throw new Error('Keras fixture output is not finite');
  console.log(`smoke ok ${tf.version_core} / layers ${tfl.version_layers}`);
}

main(process.argv[2]).catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
