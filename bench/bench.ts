/**
 * `npm run bench`: this package's layers side by side with tfjs's built-in
 * `tf.layers.batchNormalization`, on the same backend in one process.
 *
 * For every backend (cpu, wasm) and input ([32,32,32,64] and [256,512]
 * channels-last, [32,64,32,32] channels-first) it times
 *  - inference: `layer.apply(x)`,
 *  - training forward + backward: `layer.apply(x, {training: true})` (which also
 *    updates the moving statistics) and the gradients with respect to x and
 *    every trainable weight, for an upstream gradient w: the gradient of
 *    Σ y·w, without timing a multiply and sum that are not the layer's,
 * as medians after warm-up; effective GB/s counts the bytes a training step
 * must move at least (read x, write y; read x and dy, write dx: 5 × 4 bytes
 * per value; inference 2 × 4); peak bytes are tf.profile's peak of one
 * training step above the bytes held before it. Then `trainOnBatch` of a
 * small Conv2D + BN network, ours against the built-in, on cpu. Ghost batch
 * normalization (`virtualBatchSize` 8) is timed next to the same layer without
 * it, for its cost relative to plain training.
 *
 * Writes bench/results.md (unless --quick or --ghost) and prints the same
 * Markdown. `--ghost` runs only the ghost-batch comparison.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {execSync} from 'child_process';
import {readFileSync, writeFileSync} from 'fs';
import * as os from 'os';
import * as path from 'path';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer} from 'tfjs-normalization';

const QUICK = process.argv.includes('--quick');
const GHOST_ONLY = process.argv.includes('--ghost');
const RUNS = QUICK ? 3 : 20;
/** The built-in layer's training on cpu takes seconds per step. */
const SLOW_RUNS = QUICK ? 1 : 5;
const WARMUP = QUICK ? 1 : 3;

type LayerName = 'built-in' | 'BatchNormLayer' | 'BatchRenormLayer' | 'GroupNormLayer' |
  'BatchNormLayer v=8' | 'BatchRenormLayer v=8';
type LayerList = Array<[LayerName, (axis: number) => tfl.layers.Layer]>;
/** Ghost batch normalization's virtual batch size: 4 ghost batches of the [32, ...] inputs, 32 of [256, 512]. */
const VIRTUAL_BATCH = 8;
const CLIPPING = {rmax: 3, rmin: 1 / 3, dmax: 5};
const GHOST_LAYERS: LayerList = [
  ['BatchNormLayer', (axis) => new BatchNormLayer({axis})],
  ['BatchNormLayer v=8', (axis) => new BatchNormLayer({axis, virtualBatchSize: VIRTUAL_BATCH})],
  ['BatchRenormLayer', (axis) => new BatchRenormLayer({axis, renormClipping: CLIPPING})],
  ['BatchRenormLayer v=8', (axis) => new BatchRenormLayer({axis, renormClipping: CLIPPING, virtualBatchSize: VIRTUAL_BATCH})],
];
const LAYERS: LayerList = [
  ['built-in', (axis) => tfl.layers.batchNormalization({axis})],
  GHOST_LAYERS[0],
  GHOST_LAYERS[2],
  ['GroupNormLayer', (axis) => new GroupNormLayer({axis, groups: 32})],
  GHOST_LAYERS[1],
  GHOST_LAYERS[3],
];
const SHAPES: Array<{shape: number[]; axis: number}> = [
  {shape: [32, 32, 32, 64], axis: -1},
  {shape: [256, 512], axis: -1},
  {shape: [32, 64, 32, 32], axis: 1},
];

interface Row {
  backend: string;
  shape: string;
  layer: LayerName;
  inferenceMs: number;
  trainingMs: number | null;
  trainingRuns: number;
  peakBytes: number | null;
  /** tf.profile's count of kernels run by one training step (tfjs ops and this package's kernels). */
  stepKernels: number | null;
  /** Why training failed, or why the inference output is not to be trusted. */
  note: string;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall time of one call in ms, averaged over `reps` back-to-back calls; cpu and wasm run kernels synchronously. */
function timeMs(f: () => tf.TensorContainer, reps = 1): number {
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) tf.dispose(f());
  return (performance.now() - t0) / reps;
}

/** Calls per timed run so that a run lasts about 5 ms: sub-millisecond single calls are mostly timer and GC noise. */
function repsFor(f: () => tf.TensorContainer): number {
  return Math.min(50, Math.max(1, Math.ceil(5 / timeMs(f))));
}

interface Subject {
  name: LayerName;
  layer: tfl.layers.Layer;
  infer: () => tf.Tensor;
  step: () => tf.Tensor[];
  runs: number;
  inferenceTimes: number[];
  trainingTimes: number[];
  note: string;
}

/**
 * Every layer on one input, runs interleaved round-robin (one run of each layer
 * per round) so that load from other processes falls on all layers alike.
 */
async function measureShape(backend: string, shape: number[], axis: number, layers: LayerList): Promise<Row[]> {
  const x = tf.randomNormal(shape, 1, 2, 'float32', 1);
  const dy = tf.randomNormal(shape, 0, 1, 'float32', 2);
  const subjects: Subject[] = layers.map(([name, make]) => {
    const layer = make(axis);
    layer.apply(x);
    // The same non-trivial weights for every layer (weights in Keras order), so inference outputs are comparable.
    tf.tidy(() => layer.setWeights(layer.weights.map((w, i) =>
      tf.randomUniform(w.shape as number[], 0.5, 1.5, 'float32', 10 + i))));
    const weights = layer.trainableWeights.map((v) => v.read());
    const step = () => {
      const {value, grads} = tf.engine().gradients(() => layer.apply(x, {training: true}) as tf.Tensor, [x, ...weights], dy);
      return [value, ...grads];
    };
    const runs = backend === 'cpu' && name === 'built-in' ? SLOW_RUNS : RUNS;
    return {name, layer, infer: () => layer.apply(x) as tf.Tensor, step, runs, inferenceTimes: [], trainingTimes: [], note: ''};
  });
  const [builtin, ours] = subjects;
  if (builtin.name === 'built-in') {
    const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(builtin.infer(), ours.infer()))).dataSync()[0]);
    if (!(diff < 1e-3)) builtin.note = `inference output wrong: differs from BatchNormLayer's (float64-checked) by up to ${diff.toPrecision(3)}`;
  }
  const fail = (t: Subject, e: unknown) => {
    t.note = [t.note, `training throws: ${(e as Error).message.split('\n')[0]}`].filter((v) => v !== '').join('; ');
  };
  for (const t of subjects) {
    for (let i = 0; i < WARMUP; i++) tf.dispose(t.infer());
    try {
      for (let i = 0; i < (t.runs < RUNS ? 1 : WARMUP); i++) tf.dispose(t.step());
    } catch (e) {
      fail(t, e);
    }
  }
  const trains = (t: Subject) => !t.note.includes('throws');
  const inferReps = subjects.map((t) => repsFor(t.infer));
  const stepReps = subjects.map((t) => trains(t) && t.runs === RUNS ? repsFor(t.step) : 1);
  // All inference rounds first, so that no inference run pays for a training step's garbage.
  for (let round = 0; round < RUNS; round++) subjects.forEach((t, k) => t.inferenceTimes.push(timeMs(t.infer, inferReps[k])));
  for (let round = 0; round < RUNS; round++) {
    subjects.forEach((t, k) => {
      if (round < t.runs && trains(t)) t.trainingTimes.push(timeMs(t.step, stepReps[k]));
    });
  }
  const rows: Row[] = [];
  for (const t of subjects) {
    let peakBytes: number | null = null;
    let stepKernels: number | null = null;
    if (t.trainingTimes.length > 0) {
      const before = tf.memory().numBytes;
      const profile = await tf.profile(t.step);
      tf.dispose(profile.result as tf.TensorContainer);
      peakBytes = profile.peakBytes - before;
      stepKernels = profile.kernels.length;
    }
    rows.push({backend, shape: describe(shape, axis), layer: t.name, inferenceMs: median(t.inferenceTimes),
      trainingMs: t.trainingTimes.length > 0 ? median(t.trainingTimes) : null, trainingRuns: t.runs, peakBytes,
      stepKernels, note: t.note});
    t.layer.dispose();
  }
  tf.dispose([x, dy]);
  return rows;
}

function describe(shape: number[], axis: number): string {
  return `[${shape.join(',')}] axis ${axis}`;
}

async function layerRows(layers: LayerList): Promise<Row[]> {
  const rows: Row[] = [];
  for (const backend of ['cpu', 'wasm']) {
    // IS_TEST silences the cpu backend's tfjs-node notice; on wasm it turns on leak checks that fail in tfjs's own kernels.
    tf.env().set('IS_TEST', backend === 'cpu');
    await tf.setBackend(backend);
    for (const {shape, axis} of SHAPES) {
      rows.push(...await measureShape(backend, shape, axis, layers));
      process.stderr.write(`${backend} ${describe(shape, axis)} done\n`);
    }
  }
  tf.env().set('IS_TEST', true);
  return rows;
}

/** The CNN's batch: small, because tfjs's cpu Conv2DBackpropFilter takes most of a step. */
const CNN_BATCH = [16, 16, 16, 3];
const CNN_RUNS = QUICK ? 2 : 7;

/** A Conv2D + BN + ReLU ×2 network with the given BN layer, compiled for trainOnBatch. */
function cnn(bn: () => tfl.layers.Layer): tfl.LayersModel {
  const model = tfl.sequential({layers: [
    tfl.layers.conv2d({inputShape: CNN_BATCH.slice(1), filters: 8, kernelSize: 3, padding: 'same', useBias: false}),
    bn(),
    tfl.layers.activation({activation: 'relu'}),
    tfl.layers.conv2d({filters: 16, kernelSize: 3, padding: 'same', useBias: false}),
    bn(),
    tfl.layers.activation({activation: 'relu'}),
    tfl.layers.globalAveragePooling2d({}),
    tfl.layers.dense({units: 10, activation: 'softmax'}),
  ]});
  model.compile({optimizer: tf.train.sgd(0.01), loss: 'categoricalCrossentropy'});
  return model;
}

/**
 * Median ms of `trainOnBatch` for each network, their runs interleaved (one
 * step of each in turn), so that drifting load falls on all of them alike.
 */
async function cnnMs(models: tfl.LayersModel[]): Promise<number[]> {
  const x = tf.randomNormal(CNN_BATCH, 0, 1, 'float32', 3);
  const y = tf.oneHot(tf.randomUniform([CNN_BATCH[0]], 0, 10, 'int32', 4) as tf.Tensor1D, 10);
  for (const model of models) await model.trainOnBatch(x, y);
  const times = models.map(() => [] as number[]);
  for (let i = 0; i < CNN_RUNS; i++) {
    for (const [k, model] of models.entries()) {
      const t0 = performance.now();
      await model.trainOnBatch(x, y);
      times[k].push(performance.now() - t0);
    }
  }
  models.forEach((model) => model.dispose());
  tf.dispose([x, y]);
  return times.map(median);
}

function machine(): string {
  const model = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const nproc = execSync('nproc').toString().trim();
  return `${nproc} cores (nproc), ${model}, Node ${process.version}, tfjs ${tf.version_core}, ${new Date().toISOString()}`;
}

const ms = (v: number | null) => v == null ? '—' : v < 10 ? v.toFixed(2) : v.toFixed(1);
const ratio = (a: number | null, b: number | null) => a == null || b == null ? '—' : `${(a / b).toFixed(a / b < 10 ? 2 : 1)}×`;
const mb = (v: number | null) => v == null ? '—' : (v / 2 ** 20).toFixed(1);

function sizeOf(shape: string): number {
  return /\[([\d,]+)\]/.exec(shape)![1].split(',').reduce((p, q) => p * Number(q), 1);
}

function gbps(values: number, bytesPerValue: number, msValue: number | null): string {
  return msValue == null ? '—' : (values * bytesPerValue / msValue / 1e6).toFixed(2);
}

function table(rows: Row[]): string {
  const lines = [
    '| backend | input | layer | inference ms | speed-up vs built-in | inference GB/s | training fwd+bwd ms (runs) | ' +
      'speed-up vs built-in | training GB/s | step peak MB | peak vs built-in | step kernels | note |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const base = rows.find((b) => b.backend === r.backend && b.shape === r.shape && b.layer === 'built-in')!;
    const n = sizeOf(r.shape);
    lines.push(`| ${r.backend} | ${r.shape} | ${r.layer} | ${ms(r.inferenceMs)} | ${ratio(base.inferenceMs, r.inferenceMs)} | ` +
        `${gbps(n, 8, r.inferenceMs)} | ` +
        `${ms(r.trainingMs)} (${r.trainingRuns}) | ${ratio(base.trainingMs, r.trainingMs)} | ${gbps(n, 20, r.trainingMs)} | ` +
        `${mb(r.peakBytes)} | ${ratio(r.peakBytes, base.peakBytes)} | ${r.stepKernels ?? '—'} | ${r.note} |`);
  }
  return lines.join('\n');
}

/** Training with ghost batches against the same layer without them (issue 15). */
function ghostTable(rows: Row[]): string {
  const lines = [
    `| backend | input | layer | training ms, whole batch | training ms, virtualBatchSize ${VIRTUAL_BATCH} | ghost / whole |`,
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows.filter((row) => row.layer.endsWith(` v=${VIRTUAL_BATCH}`))) {
    const plain = rows.find((b) => b.backend === r.backend && b.shape === r.shape && `${b.layer} v=${VIRTUAL_BATCH}` === r.layer)!;
    lines.push(`| ${r.backend} | ${r.shape} | ${plain.layer} | ${ms(plain.trainingMs)} | ${ms(r.trainingMs)} | ` +
        `${ratio(r.trainingMs, plain.trainingMs)} |`);
  }
  return lines.join('\n');
}

const GHOST_NOTE = `Ghost batches: the same layer with \`virtualBatchSize: ${VIRTUAL_BATCH}\`, timed in the same ` +
  'round-robin; ghost / whole = its training time over the plain layer\'s. No path copies x into another ' +
  'layout: on cpu the fused kernels index statistics by (sample mod B/v, channel), and the composite ' +
  '(wasm) takes per-(sample, channel) means, then means over the v samples of each ghost batch. The ' +
  'statistics and the per-(ghost batch, channel) factors are B/v times as many as plain batch norm\'s, ' +
  'which is what costs at [256,512] (32 ghost batches of 512 channels).';

/** Each target of issue 4, checked against this run's figures. */
function targets(rows: Row[]): string {
  const get = (backend: string, shape: string, layer: LayerName) =>
    rows.find((r) => r.backend === backend && r.shape === shape && r.layer === layer)!;
  const lines = ['| target | case | figure | met |', '|---|---|---|---|'];
  const check = (target: string, c: string, value: number | null, ok: (v: number) => boolean, show: string) =>
    lines.push(`| ${target} | ${c} | ${value == null ? 'no figure' : show} | ${value != null && ok(value) ? 'yes' : 'NO'} |`);
  for (const backend of ['cpu', 'wasm']) {
    for (const {shape, axis} of SHAPES) {
      const s = describe(shape, axis);
      const base = get(backend, s, 'built-in');
      const bn = get(backend, s, 'BatchNormLayer');
      const c = `${backend} ${s}`;
      if (base.trainingMs != null) {
        const need = backend === 'cpu' ? 30 : 2.5;
        const speedup = base.trainingMs / bn.trainingMs!;
        check(`training ≥ ${need}× built-in`, c, speedup, (v) => v >= need, `${speedup.toFixed(1)}×`);
        const peak = bn.peakBytes! / base.peakBytes!;
        check('training step peak bytes ≤ ½ built-in', c, peak, (v) => v <= 0.5, `${peak.toFixed(2)}×`);
      } else {
        lines.push(`| training vs built-in | ${c} | built-in ${base.note} | n/a |`);
      }
      for (const layer of ['BatchNormLayer', 'BatchRenormLayer', 'GroupNormLayer'] as LayerName[]) {
        const speedup = base.inferenceMs / get(backend, s, layer).inferenceMs;
        // Group norm has no built-in counterpart and computes its statistics at inference too.
        const what = layer === 'GroupNormLayer' ? `${layer} inference (GN statistics) ≥ 1.0× built-in BN` :
          `${layer} inference ≥ 1.0× built-in`;
        check(what, c, speedup, (v) => v >= 1, `${speedup.toFixed(2)}×`);
      }
      for (const layer of ['BatchRenormLayer', 'GroupNormLayer'] as LayerName[]) {
        const t = get(backend, s, layer).trainingMs;
        const rel = t == null ? null : t / bn.trainingMs!;
        check(`${layer} training ≤ 1.3× our BN`, c, rel, (v) => v <= 1.3, `${rel?.toFixed(2)}×`);
      }
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadStart = os.loadavg()[0].toFixed(1);
  if (GHOST_ONLY) {
    const rows = await layerRows(GHOST_LAYERS);
    console.log([
      `# Ghost batch normalization, \`node -r esbuild-register bench/bench.ts --ghost${QUICK ? ' --quick' : ''}\``, '',
      `Machine: ${machine()}. Took ${((performance.now() - started) / 60000).toFixed(1)} min; 1-minute load ` +
        `average ${loadStart} at the start, ${os.loadavg()[0].toFixed(1)} at the end. Medians of ${RUNS} runs ` +
        `after ${WARMUP} warm-up runs.`, '', GHOST_NOTE, '', ghostTable(rows), ''].join('\n'));
    return;
  }
  const rows = await layerRows(LAYERS);
  tf.env().set('IS_TEST', true);
  await tf.setBackend('cpu');
  const [cnnBuiltin, cnnOurs] = await cnnMs([cnn(() => tfl.layers.batchNormalization()), cnn(() => new BatchNormLayer())]);
  const minutes = ((performance.now() - started) / 60000).toFixed(1);
  const report = [
    '# tfjs-normalization benchmark',
    '',
    `Machine: ${machine()}.`,
    `Command: \`${QUICK ? 'node -r esbuild-register bench/bench.ts --quick' : 'npm run bench'}\`; took ${minutes} min; ` +
      `1-minute load average ${loadStart} at the start, ${os.loadavg()[0].toFixed(1)} at the end (other processes on the ${os.cpus().length} cores).`,
    '',
    `Medians of ${RUNS} runs after ${WARMUP} warm-up runs, the layers' runs interleaved round-robin; a run ` +
      'repeats a call that takes under 5 ms enough times to last about 5 ms and counts the time per call; ' +
      `the built-in layer's training on cpu: ${SLOW_RUNS} runs after 1 warm-up (seconds per step). Training = forward with \`{training: true}\` ` +
      '(moving statistics updated) + gradients with respect to x and the trainable weights for an upstream ' +
      'gradient w (the gradient of Σ y·w). Effective GB/s = the bytes a pass must move at least / time: ' +
      'inference 8 bytes per value (read x, write y), training 20 (read x, write y; read x and dy, write dx). ' +
      'Step peak = tf.profile peak bytes of one training step above the bytes held before it; step kernels = ' +
      'the kernels tf.profile counts in that step (each tfjs op, and each of this package\'s fused kernels, is one). ' +
      'Speed-up = built-in time / this layer\'s time; peak vs built-in = this layer\'s peak / built-in peak. ' +
      'BatchRenormLayer: renormClipping {rmax 3, rmin 1/3, dmax 5}; GroupNormLayer: 32 groups.',
    '',
    table(rows),
    '',
    '## Targets (issue 4)',
    '',
    targets(rows),
    '',
    '## Ghost batches (issue 15)',
    '',
    GHOST_NOTE,
    '',
    ghostTable(rows),
    '',
    `## trainOnBatch, Conv2D(8) + BN + ReLU, Conv2D(16) + BN + ReLU, global pooling, dense; batch [${CNN_BATCH}]; cpu`,
    '',
    'tfjs\'s cpu Conv2DBackpropFilter dominates the step, hence the small network and few runs.',
    '',
    `| BN layer | trainOnBatch ms (median of ${CNN_RUNS}, the two networks' steps interleaved, after 1 warm-up) |`,
    '|---|---|',
    `| built-in | ${ms(cnnBuiltin)} |`,
    `| BatchNormLayer | ${ms(cnnOurs)} (${ratio(cnnBuiltin, cnnOurs)} faster) |`,
    '',
  ].join('\n');
  console.log(report);
  if (!QUICK) writeFileSync(path.join(__dirname, 'results.md'), report);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
