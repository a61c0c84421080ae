/**
 * End-to-end tests in headless Chromium (`npm run test:browser`, which builds
 * dist/browser first). They load the package the way users do, next to the
 * @tensorflow/tfjs script tag or through a bundler, run the demo page on the
 * cpu and webgl backends, reload its model from IndexedDB after restarting the
 * browser, and compare our layers with tfjs's BatchNormalization on webgl.
 * Screenshots go to results/browser/. Ends with "N passed, N failed".
 */
import * as esbuild from 'esbuild';
import {mkdirSync, statSync} from 'node:fs';
import {join} from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import {assert, Browser, CHROMIUM, PageWindow, RESULTS, ROOT, Runner, startServer, writeSummary} from './browser';

const EPOCHS = Number(process.env.DEMO_EPOCHS ?? 20);
const PREDICTION_TOLERANCE = 1e-6;
const WEBGL_TOLERANCE = 1e-4;
// The class names the package registers with tfjs, and the export that must be registered under each.
const REGISTERED: Record<string, string> = {
  BatchNormLayer: 'BatchNormLayer', BatchRenormLayer: 'BatchRenormLayer', GroupNormalization: 'GroupNormLayer',
  'Addons>GroupNormalization': 'AddonsGroupNormalization', 'Addons>InstanceNormalization': 'AddonsInstanceNormalization',
};
// The layers in the demo model and in the bundler test's model.
const MODEL_CLASSES = ['BatchNormLayer', 'BatchRenormLayer', 'GroupNormalization'];

/** Weights (bit patterns, by name) and predictions on `probe` of the demo model or of one loaded from `url`. */
interface Snapshot {backend: string; classes: string[]; weights: Record<string, number[]>; predictions: number[]}

async function main(): Promise<number> {
  mkdirSync(RESULTS, {recursive: true});
  const runner = new Runner();
  const server = await startServer();
  const browser = new Browser();
  try {
    await browser.launch();
    console.log(`Chromium ${browser.context!.browser()?.version() ?? '?'} (${CHROMIUM}), demo at ${server.url}`);
    const webglMissing = await probeWebgl(browser, server.url);
    const needsWebgl = () => webglMissing;

    runner.test('IIFE bundle registers the layers with the page\'s tfjs and contains no tfjs', async () => {
      const {page, errors} = await browser.blankPage(server.url);
      const found = await page.evaluate((registered) => {
        const {tf, tfnorm} = window as unknown as PageWindow;
        const map = tf.serialization.SerializationMap.getMap().classNameMap;
        const exported = tfnorm as unknown as Record<string, unknown>;
        const tfExports = tf as unknown as Record<string, unknown>;
        return {
          registered: Object.keys(registered).filter((n) => map[n] != null && map[n][0] === exported[registered[n]]),
          extendsPageLayer: new tfnorm.BatchNormLayer({}) instanceof tf.layers.Layer,
          reexported: Object.keys(exported).filter((k) => exported[k] === tfExports[k]),
        };
      }, REGISTERED);
      await page.close();
      assert(errors.length === 0, `page errors: ${errors.join('; ')}`);
      assert(found.registered.length === Object.keys(REGISTERED).length,
          `registered with the page's tf: ${found.registered.join(', ')}; ` +
          `expected ${Object.keys(REGISTERED).join(', ')}`);
      assert(found.extendsPageLayer, 'BatchNormLayer does not extend the page\'s tf.layers.Layer');
      assert(found.reexported.length === 0, `bundle re-exports tfjs objects: ${found.reexported.join(', ')}`);
      // A bundle holding tfjs-core would be larger than tfjs-core's own minified bundle.
      const ours = statSync(join(ROOT, 'dist/browser/tfjs-normalization.min.js')).size;
      const core = statSync(join(ROOT, 'node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js')).size;
      console.log(`         tfjs-normalization.min.js ${(ours / 1024).toFixed(1)} KiB; ` +
          `tf-core.min.js ${(core / 1024).toFixed(1)} KiB`);
      // Half tfjs-core's size: room for the package's own code (73 KiB now), far below a copy of tfjs-core.
      assert(ours < core / 2, `bundle is ${ours} bytes, too large to be free of tfjs (tf-core.min.js is ${core})`);
    });

    runner.test('IIFE bundle loaded without tfjs fails with a message that says so', async () => {
      const {page, errors} = await browser.blankPage(server.url, ['dist/browser/tfjs-normalization.min.js']);
      const defined = await page.evaluate(() => typeof (window as unknown as PageWindow).tfnorm);
      await page.close();
      assert(errors.some((e) => e.includes('load @tensorflow/tfjs')), `page errors: ${JSON.stringify(errors)}`);
      assert(defined === 'undefined', `tfnorm is ${defined}`);
    });

    for (const backend of ['cpu', 'webgl']) {
      runner.test(`demo on ${backend}: trains, saves to IndexedDB, reloads bit-identical after a browser restart`,
          () => demoRoundTrip(browser, server.url, backend), backend === 'webgl' ? needsWebgl : undefined);
    }

    runner.test(`webgl: BatchNormLayer matches tf.layers.batchNormalization, all layers match cpu ` +
        `(${WEBGL_TOLERANCE})`, () => compareOnWebgl(browser, server.url), needsWebgl);

    runner.test('ESM build as tfjs-normalization/browser in a bundler: one copy of tfjs, layers registered, ' +
        'save/load', () => esmThroughBundler(browser, server.url));

    const summary = await runner.run();
    if (webglMissing != null) console.log(`\n${loud(`WEBGL TESTS NOT RUN: ${webglMissing}`)}`);
    writeSummary(summary);
    console.log(`${summary.passed} passed, ${summary.failed} failed`);
    return summary.failed === 0 ? 0 : 1;
  } finally {
    await browser.close();
    server.stop();
  }
}

/** Null when the webgl backend initializes in this Chromium, else why it did not. */
async function probeWebgl(browser: Browser, url: string): Promise<string | null> {
  const {page, errors} = await browser.blankPage(url);
  page.on('console', (msg) => {
    if (msg.type() === 'warning' || msg.type() === 'error') errors.push(msg.text());
  });
  const probe = await page.evaluate(async () => {
    const {tf} = window as unknown as PageWindow;
    const ok = await tf.setBackend('webgl');
    if (!ok) return {ok, renderer: null};
    const gl = (tf.backend() as unknown as {gpgpu: {gl: WebGLRenderingContext}}).gpgpu.gl;
    const debug = gl.getExtension('WEBGL_debug_renderer_info');
    return {
      ok, renderer: String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER)),
      version: tf.env().getNumber('WEBGL_VERSION'), float32: tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
    };
  });
  await page.close();
  if (!probe.ok) {
    const reason = 'the tfjs webgl backend did not initialize in headless Chromium ' +
        `(${errors.join('; ') || 'no message from the page'})`;
    console.log(loud(reason));
    return reason;
  }
  console.log(`WebGL ${probe.version}: ${probe.renderer}; float32 render targets ${probe.float32}`);
  return null;
}

async function demoRoundTrip(browser: Browser, url: string, backend: string): Promise<void> {
  const page = await browser.context!.newPage();
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${url}?backend=${backend}&epochs=${EPOCHS}`);
  await page.waitForFunction(() => (window as unknown as PageWindow).demoResult?.done === true, undefined,
      {timeout: 600_000, polling: 500});
  const result = (await page.evaluate(() => (window as unknown as PageWindow).demoResult))!;
  await page.screenshot({path: join(RESULTS, `demo-${backend}.png`), fullPage: true});
  const shown = await page.textContent('#result');
  assert(result.error == null && errors.length === 0, `demo failed: ${result.error ?? errors.join('; ')}`);
  console.log(`         ${result.backend}${result.renderer ? ` (${result.renderer})` : ''}: ${result.epochs} epochs, ` +
      `loss ${result.losses[0].toFixed(4)} -> ${result.losses[result.losses.length - 1].toFixed(4)}, ` +
      `accuracy ${(100 * result.accuracy).toFixed(1)}%, page: max weight diff ${result.maxWeightDiff}, ` +
      `max prediction diff ${result.maxPredictionDiff}`);
  assert(result.backend === backend, `demo ran on ${result.backend}, asked for ${backend}`);
  assert(result.ok && shown?.startsWith('PASS'), `page reports: ${shown}`);
  assert(MODEL_CLASSES.every((c) => result.layerClasses.includes(c)),
      `reloaded layers: ${result.layerClasses.join(', ')}`);
  assert(result.losses[result.losses.length - 1] < result.losses[0], `loss did not fall: ${result.losses.join(', ')}`);

  const probe = probePoints();
  const before = await page.evaluate(snapshot, {url: null, backend, probe});
  const statistics = Object.keys(before.weights).filter((n) => /\/(moving|renorm)_\w+$/.test(n));
  assert(statistics.length >= 7, `expected the moving statistics of both batch layers, found ${statistics.join(', ')}`);
  // Initial values are 0 (means) and 1 (variances, stddevs); training must have moved every one.
  const moved = statistics.filter((n) => before.weights[n].some((bits) => bits !== 0 && bits !== 0x3f800000));
  assert(moved.length === statistics.length,
      `statistics unchanged by training: ${statistics.filter((n) => !moved.includes(n))}`);

  const memory = await page.evaluate(trainingMemory);
  assert(memory.after === memory.before, `tensors grew from ${memory.before} to ${memory.after} over 20 training steps`);
  await page.close();

  // Restart Chromium on the same profile: the model must come back from IndexedDB on disk.
  await browser.relaunch();
  const fresh = await browser.blankPage(url);
  const after = await fresh.page.evaluate(snapshot, {url: result.url, backend, probe});
  await fresh.page.close();
  assert(after.backend === backend, `reloaded on ${after.backend}`);
  assert(MODEL_CLASSES.every((c) => after.classes.includes(c)), `reloaded layers: ${after.classes.join(', ')}`);
  const names = Object.keys(before.weights);
  assert(names.length === Object.keys(after.weights).length, 'weight count differs after reload');
  for (const name of names) {
    const [a, b] = [before.weights[name], after.weights[name] ?? []];
    const differing = a.filter((bits, i) => bits !== b[i]).length;
    assert(a.length === b.length && differing === 0, `${name}: ${differing} of ${a.length} values differ after reload`);
  }
  const maxDiff = Math.max(...before.predictions.map((p, i) => Math.abs(p - after.predictions[i])));
  console.log(`         after restart: ${names.length} weights bit-identical (${statistics.length} statistics), ` +
      `max prediction diff ${maxDiff}; tensors steady at ${memory.after} over 20 steps`);
  assert(maxDiff <= PREDICTION_TOLERANCE, `predictions differ by ${maxDiff}`);
}

function probePoints(): number[][] {
  const points: number[][] = [];
  for (let i = 0; i < 64; i++) points.push([Math.cos(i * 0.7) * (i / 64), Math.sin(i * 1.3) * (1 - i / 64)]);
  return points;
}

/** Runs in the page: weights as bit patterns and predictions, from the demo model or a saved one. */
async function snapshot({url, backend, probe}: {url: string | null; backend: string; probe: number[][]}):
    Promise<Snapshot> {
  const {tf, demoModel} = window as unknown as PageWindow;
  if (!(await tf.setBackend(backend))) throw new Error(`${backend} backend did not initialize`);
  // As the demo page does before its comparison (see runEveryOpOnBackend in examples/browser/demo.js).
  if (backend === 'webgl') tf.env().set('WEBGL_CPU_FORWARD', false);
  const model = url == null ? demoModel! : await tf.loadLayersModel(url);
  const weights: Record<string, number[]> = {};
  for (const w of model.weights) {
    const data = w.read().dataSync() as Float32Array;
    weights[w.originalName] = Array.from(new Uint32Array(data.buffer, data.byteOffset, data.length));
  }
  const predictions = tf.tidy(() => Array.from((model.predict(tf.tensor2d(probe)) as TF.Tensor).dataSync()));
  return {backend: tf.getBackend(), classes: model.layers.map((l) => l.getClassName()), weights, predictions};
}

/** Runs in the page: tensor count before and after 20 training steps of the demo model. */
async function trainingMemory(): Promise<{before: number; after: number}> {
  const {tf, demoModel} = window as unknown as PageWindow;
  const x = tf.randomNormal([32, 2], 0, 0.5, 'float32', 1);
  const y = tf.cast(tf.greater(tf.randomUniform([32, 1], 0, 1, 'float32', 2), 0.5), 'float32');
  for (let i = 0; i < 3; i++) await demoModel!.trainOnBatch(x, y);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 20; i++) await demoModel!.trainOnBatch(x, y);
  const after = tf.memory().numTensors;
  tf.dispose([x, y]);
  return {before, after};
}

async function compareOnWebgl(browser: Browser, url: string): Promise<void> {
  const {page, errors} = await browser.blankPage(url);
  const {diffs, unmoved} = await page.evaluate(webglDifferences);
  await page.close();
  assert(errors.length === 0, `page errors: ${errors.join('; ')}`);
  assert(unmoved.length === 0, `statistics a training step left unchanged: ${unmoved.join(', ')}`);
  const groups = new Map<string, string[]>();
  for (const [key, value] of Object.entries(diffs)) {
    const [label, output] = key.split(': ');
    groups.set(label, [...(groups.get(label) ?? []), `${output} ${value.toExponential(1)}`]);
  }
  for (const [label, values] of groups) console.log(`         max |diff| ${label}: ${values.join(', ')}`);
  const bad = Object.entries(diffs).filter(([, v]) => !(v <= WEBGL_TOLERANCE));
  assert(bad.length === 0, `above ${WEBGL_TOLERANCE}: ${bad.map(([k, v]) => `${k} ${v}`).join(', ')}`);
}

/**
 * Runs in the page. Same weights and input for every layer: outputs in
 * inference and training mode, the updated moving statistics and the
 * gradients (input, gamma, beta) of a weighted sum of the training output.
 * Momentum 0.5, so a difference in the batch statistics shows in the update.
 */
async function webglDifferences(): Promise<{diffs: Record<string, number>; unmoved: string[]}> {
  const {tf, tfnorm} = window as unknown as PageWindow;
  const shape = [8, 5, 5, 6];
  const xData = tf.randomNormal(shape, 1, 2, 'float32', 11).dataSync();
  const upstream = tf.randomNormal(shape, 0, 1, 'float32', 12).dataSync();
  const maxDiff = (a: Float32Array, b: Float32Array | TF.Tensor) => {
    const other = b instanceof Float32Array ? b : b.dataSync() as Float32Array;
    return a.length !== other.length ? Infinity : a.reduce((m, v, i) => Math.max(m, Math.abs(v - other[i])), 0);
  };
  const diffs: Record<string, number> = {};
  const unmoved: string[] = [];

  // Every weight (gamma, beta, statistics) drawn from [0.5, 1.5]: valid for variances and stddevs too.
  // With `masked`, training passes a mask of the input's shape without the channel axis (about 30% false).
  const run = async (backend: string, make: () => TF.layers.Layer, masked = false): Promise<Record<string, Float32Array>> => {
    if (!(await tf.setBackend(backend))) throw new Error(`${backend} backend did not initialize`);
    const layer = make();
    const mask = masked ? tf.greater(tf.randomUniform(shape.slice(0, -1), 0, 1, 'float32', 13), 0.3) : undefined;
    const x = tf.variable(tf.tensor(xData, shape));
    const w = tf.tensor(upstream, shape);
    layer.build(shape);
    const values = layer.weights.map((v, i) => tf.randomUniform(v.shape as number[], 0.5, 1.5, 'float32', 20 + i));
    layer.setWeights(values);
    const inference = layer.apply(x) as TF.Tensor;
    const training = layer.apply(x, {training: true, mask}) as TF.Tensor;
    const statistics = layer.nonTrainableWeights.map((v) => v.read().dataSync() as Float32Array);
    statistics.forEach((s, i) => {
      if (maxDiff(s, values[layer.weights.indexOf(layer.nonTrainableWeights[i])]) < 1e-3) unmoved.push(layer.name);
    });
    const trainable = layer.trainableWeights.map((v) => v.read() as TF.Variable);
    const {grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x, {training: true, mask}) as TF.Tensor, w)) as TF.Scalar,
        [x, ...trainable]);
    const out: Record<string, Float32Array> = {
      inference: inference.dataSync() as Float32Array, training: training.dataSync() as Float32Array,
      dx: grads[x.name].dataSync() as Float32Array,
      dgamma: grads[trainable[0].name].dataSync() as Float32Array,
      dbeta: grads[trainable[1].name].dataSync() as Float32Array,
    };
    statistics.forEach((s, i) => { out[`statistic${i}`] = s; });
    tf.dispose([x, w, inference, training, ...values, ...Object.values(grads), ...(mask ? [mask] : [])]);
    layer.weights.forEach((v) => v.dispose());
    return out;
  };

  const compare = (label: string, a: Record<string, Float32Array>, b: Record<string, Float32Array>) => {
    if (Object.keys(a).join() !== Object.keys(b).join()) throw new Error(`${label}: outputs differ in kind`);
    for (const key of Object.keys(a)) diffs[`${label}: ${key}`] = maxDiff(a[key], b[key]);
  };

  const ours = await run('webgl', () => tfnorm.batchNorm({momentum: 0.5}));
  const builtIn = await run('webgl', () => tf.layers.batchNormalization({momentum: 0.5}));
  compare('BN vs tfjs BatchNormalization (webgl)', ours, builtIn);
  compare('BN webgl vs cpu', ours, await run('cpu', () => tfnorm.batchNorm({momentum: 0.5})));
  const renorm = () => tfnorm.batchRenorm({
    momentum: 0.5, renormMomentum: 0.5, renormClipping: {rmax: 1.5, rmin: 0.7, dmax: 0.4},
  });
  compare('BatchRenorm webgl vs cpu', await run('webgl', renorm), await run('cpu', renorm));
  const batchNorm = () => tfnorm.batchNorm({momentum: 0.5});
  compare('BN with a mask webgl vs cpu', await run('webgl', batchNorm, true), await run('cpu', batchNorm, true));
  compare('BatchRenorm with a mask webgl vs cpu', await run('webgl', renorm, true), await run('cpu', renorm, true));
  const group = () => tfnorm.groupNorm({groups: 3});
  compare('GroupNorm webgl vs cpu', await run('webgl', group), await run('cpu', group));
  // Ghost batches: webgl runs the composite, cpu the fused kernel (4 ghost batches of 2 samples).
  const ghost = () => tfnorm.batchNorm({momentum: 0.5, virtualBatchSize: 2});
  compare('BN with virtualBatchSize webgl vs cpu', await run('webgl', ghost), await run('cpu', ghost));
  const ghostRenorm = () => tfnorm.batchRenorm({momentum: 0.5, renormMomentum: 0.5, virtualBatchSize: 2,
    renormClipping: {rmax: 1.5, rmin: 0.7, dmax: 0.4}});
  compare('BatchRenorm with virtualBatchSize webgl vs cpu', await run('webgl', ghostRenorm), await run('cpu', ghostRenorm));
  return {diffs, unmoved};
}

/** Bundles an app importing @tensorflow/tfjs and our ESM build, as a user's bundler would, and runs it. */
async function esmThroughBundler(browser: Browser, url: string): Promise<void> {
  const app = await esbuild.build({
    stdin: {
      contents: `import * as tf from '@tensorflow/tfjs';
import * as tfnorm from 'tfjs-normalization/browser';
Object.assign(window, {tf, tfnorm});`,
      resolveDir: ROOT, loader: 'js',
    },
    bundle: true, format: 'iife', platform: 'browser', write: false, metafile: true, logLevel: 'silent',
  });
  const inputs = Object.keys(app.metafile!.inputs);
  assert(inputs.includes('dist/esm/index.js'),
      `'tfjs-normalization/browser' resolved to ${inputs.filter((p) => !p.includes('node_modules'))}`);
  // The package folders each file came from; one copy of a package means one folder.
  const copies = (pkg: string) => new Set(inputs
      .map((p) => p.match(new RegExp(`^(.*node_modules/@tensorflow/${pkg})/`))?.[1])
      .filter((p) => p != null));
  for (const pkg of ['tfjs-core', 'tfjs-layers']) {
    assert(copies(pkg).size === 1, `${pkg} bundled from ${[...copies(pkg)].join(', ') || 'nowhere'}`);
  }
  const {page, errors} = await browser.blankPage(url, []);
  await page.addScriptTag({content: app.outputFiles![0].text});
  const outcome = await page.evaluate(async (classes) => {
    const {tf, tfnorm} = window as unknown as PageWindow;
    await tf.setBackend('cpu');
    const map = tf.serialization.SerializationMap.getMap().classNameMap;
    const model = tf.sequential({layers: [
      tf.layers.dense({inputShape: [3], units: 8}), tfnorm.batchNorm(), tfnorm.batchRenorm(),
      tfnorm.groupNorm({groups: 2}), tf.layers.dense({units: 1}),
    ]});
    model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
    const x = tf.randomNormal([16, 3], 0, 1, 'float32', 5);
    const y = tf.randomNormal([16, 1], 0, 1, 'float32', 6);
    await model.fit(x, y, {epochs: 2, batchSize: 8, verbose: 0});
    let saved: TF.io.ModelArtifacts | null = null;
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const diff = tf.tidy(() =>
      tf.max(tf.abs(tf.sub(model.predict(x) as TF.Tensor, loaded.predict(x) as TF.Tensor))).dataSync()[0]);
    return {
      registered: classes.filter((c) => map[c] != null),
      loadedClasses: loaded.layers.map((l) => l.getClassName()),
      diff,
    };
  }, MODEL_CLASSES);
  await page.close();
  assert(errors.length === 0, `page errors: ${errors.join('; ')}`);
  assert(outcome.registered.length === MODEL_CLASSES.length, `registered: ${outcome.registered.join(', ')}`);
  assert(MODEL_CLASSES.every((c) => outcome.loadedClasses.includes(c)), `loaded: ${outcome.loadedClasses.join(', ')}`);
  assert(outcome.diff === 0, `predictions after the in-memory round trip differ by ${outcome.diff}`);
}

function loud(message: string): string {
  const bar = '!'.repeat(Math.min(100, message.length + 6));
  return `${bar}\n!! ${message} !!\n${bar}`;
}

main().then((code) => process.exit(code), (err) => {
  console.error(err);
  writeSummary({passed: 0, failed: 1, notRun: 0});
  console.log('0 passed, 1 failed');
  process.exit(1);
});
