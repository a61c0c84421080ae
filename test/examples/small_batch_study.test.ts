/** The small-batch study's building blocks on small data, and one tiny end-to-end run. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs-core';
import {XMLParser, XMLValidator} from 'fast-xml-parser';
import * as tfl from '@tensorflow/tfjs-layers';
import {fileSystem} from 'tfjs-normalization/node';
import {formatTrainingModeTable, main, meanAccuracy, parseArgs, StudyResult} from '../../examples/small_batch_study';
import {
  Dataset, defaultDataDir, permutation, readSplit, seededRandom, subset,
} from '../../examples/small_batch_study/data';
import {parseIdx} from '../../examples/small_batch_study/idx';
import {Progress} from '../../examples/small_batch_study/progress';
import {buildModel, scaledRenormWarmup, VARIANTS} from '../../examples/small_batch_study/model';
import {lineChart} from '../../examples/small_batch_study/svg';
import {
  batchOfOnePrediction, predict, predictTrainingMode, trainRun,
} from '../../examples/small_batch_study/train';

// The study module imports the wasm backend, which outranks cpu; these tests run on cpu.
beforeAll(() => tf.setBackend('cpu'));

/** An IDX file written byte by byte from its definition: 0, 0, type 0x08, rank, big-endian uint32 dims, values. */
function idxBytes(shape: number[], values: number[]): Uint8Array {
  const bytes = [0, 0, 0x08, shape.length];
  for (const d of shape) bytes.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...bytes, ...values]);
}

/** Every element as an array, attributes as plain strings. */
function parseSvg(svg: string) {
  return new XMLParser({
    ignoreAttributes: false, attributeNamePrefix: '', isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
  }).parse(svg);
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'sbs-test-'));
}

describe('IDX reader', () => {
  it('reads shape and values of a hand-made buffer', () => {
    const values = Array.from({length: 2 * 3 * 258}, (_, i) => (i * 7) % 256);
    const idx = parseIdx(idxBytes([2, 3, 258], values));
    expect(idx.shape).toEqual([2, 3, 258]);
    expect(Array.from(idx.data)).toEqual(values);
  });

  it('rejects a bad magic number, an unsupported type and a size mismatch', () => {
    const good = idxBytes([2, 2], [1, 2, 3, 4]);
    expect(() => parseIdx(Uint8Array.from([1, ...good.subarray(1)]))).toThrow(/not an IDX file/);
    expect(() => parseIdx(Uint8Array.from([0, 0, 0x0d, ...good.subarray(3)]))).toThrow(/type 0xd is not supported/);
    expect(() => parseIdx(good.subarray(0, good.length - 1))).toThrow(/needs 4 values; the file has 3/);
  });

  it('reads a split from plain and gzipped files, scaled to [0, 1], in the order asked', () => {
    const dir = tempDir();
    try {
      const pixels = [0, 255, 51, 102, 10, 20, 30, 40, 255, 0, 0, 255];
      fs.writeFileSync(path.join(dir, 'train-images-idx3-ubyte'), idxBytes([3, 2, 2], pixels));
      fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte.gz'), zlib.gzipSync(idxBytes([3], [7, 1, 4])));
      const raw = readSplit(dir, 'train');
      expect([raw.count, raw.height, raw.width]).toEqual([3, 2, 2]);
      const data = subset(raw, [2, 0]);
      expect(Array.from(data.labels)).toEqual([4, 7]);
      expect(Array.from(data.images)).toEqual([...pixels.slice(8), ...pixels.slice(0, 4)].map((v) => Math.fround(v / 255)));
      expect(() => readSplit(dir, 't10k')).toThrow(/IDX file not found/);
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });

  it('rejects images and labels of different counts', () => {
    const dir = tempDir();
    try {
      fs.writeFileSync(path.join(dir, 't10k-images-idx3-ubyte'), idxBytes([2, 1, 1], [1, 2]));
      fs.writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), idxBytes([3], [1, 2, 3]));
      expect(() => readSplit(dir, 't10k')).toThrow(/expected \[n, height, width\] and \[n\]/);
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });
});

describe('progress', () => {
  const stream = (isTTY: boolean) => {
    const chunks: string[] = [];
    return {chunks, stream: {isTTY, write: (s: string) => chunks.push(s)} as unknown as NodeJS.WriteStream};
  };

  it('writes a few plain lines, at each quarter, when stderr is not a terminal', () => {
    const {chunks, stream: s} = stream(false);
    const p = new Progress('run', 10, s);
    for (let i = 1; i <= 10; i++) p.update(i, 1);
    expect(chunks.map((c) => c.match(/^run: (\d+)%/)?.[1])).toEqual(['30', '50', '80', '100']);
    expect(chunks.every((c) => c.endsWith('\n') && !c.includes('\r'))).toBe(true);
    expect(chunks[0]).toMatch(/ETA/);
    expect(chunks[3]).toMatch(/10\/10 steps .*took/);
  });

  it('redraws one bar in place on a terminal, with ETA, and ends the line when done', () => {
    const {chunks, stream: s} = stream(true);
    const p = new Progress('run', 3, s);
    p.update(1, 2);
    p.update(3, 1);
    expect(chunks[0]).toMatch(/^\r\x1b\[Krun \[#{8}-{16}\] 1\/3 steps {2}loss 2\.000 .*ETA/);
    expect(chunks.join('')).toMatch(/\[#{24}\] 3\/3 steps .*took .*\n$/);
  });
});

describe('SVG chart', () => {
  const series = [
    {label: 'A & <b>', points: [{x: 2, y: 0.5}, {x: 4, y: 0.6}, {x: 8, y: 0.7}, {x: 32, y: 0.9}]},
    {label: 'B', points: [{x: 32, y: 0.85}, {x: 2, y: 0.8}, {x: 8, y: 0.82}, {x: 4, y: 0.81}]},
    {label: 'C', points: [{x: 2, y: 0.3}, {x: 4, y: 0.4}, {x: 8, y: 0.5}, {x: 32, y: 0.6}]},
  ];
  const svg = lineChart(series, {title: 'T', subtitle: ['S1', 'S2'], xLabel: 'batch size', yLabel: 'accuracy'});

  it('is well-formed XML with one polyline per series and a legend entry per series', () => {
    expect(XMLValidator.validate(svg)).toBe(true);
    const doc = new XMLParser({ignoreAttributes: false, attributeNamePrefix: '', isArray: () => true}).parse(svg);
    const root = doc.svg[0];
    expect(root.polyline).toHaveLength(3);
    const texts = root.text.map((t: {'#text'?: unknown}) => String(t['#text']));
    for (const label of ['A & <b>', 'B', 'C', 'T', 'S1', 'S2', 'batch size', 'accuracy']) expect(texts).toContain(label);
  });

  it('puts the x axis on a log-2 scale and orders each line by batch size', () => {
    const doc = new XMLParser({ignoreAttributes: false, attributeNamePrefix: ''}).parse(svg);
    for (const line of doc.svg.polyline) {
      const xs = (line.points as string).split(' ').map((p) => Number(p.split(',')[0]));
      expect(xs).toHaveLength(4);
      // Batch 2, 4, 8, 32 sit at log2 = 1, 2, 3, 5: steps of 1, 1, 2.
      const steps = [xs[1] - xs[0], xs[2] - xs[1], xs[3] - xs[2]];
      expect(steps[0]).toBeGreaterThan(0);
      expect(steps[1]).toBeCloseTo(steps[0], 0);
      expect(steps[2]).toBeCloseTo(2 * steps[0], 0);
    }
    // Higher accuracy is drawn higher (smaller y).
    const ys = (doc.svg.polyline[0].points as string).split(' ').map((p) => Number(p.split(',')[1]));
    expect(ys).toEqual([...ys].sort((a, b) => b - a));
    expect(svg).not.toContain('error-bar');
  });

  it('draws each sd as an error bar from mean − sd to mean + sd, on the scale of the y ticks', () => {
    const sds = [[0.02, 0.05, 0, 0.01], [0.1, 0.03, 0.04, 0.02]];
    const withSd = series.slice(0, 2).map((s, i) => ({...s, points: s.points.map((p, j) => ({...p, sd: sds[i][j]}))}));
    const chart = lineChart(withSd, {title: 'T', subtitle: [], xLabel: 'x', yLabel: 'y'});
    expect(XMLValidator.validate(chart)).toBe(true);
    const root = parseSvg(chart).svg[0];
    // Pixels per unit of accuracy, read off two y tick labels ("50%", "55%") and their grid lines.
    const tick = (label: string) => Number(root.text.find((t: {'#text': unknown}) => String(t['#text']) === label).y) - 4;
    const perUnit = (tick('50%') - tick('55%')) / 0.05;
    const bars = root.path.filter((p: {class: string}) => p.class === 'error-bar');
    expect(bars).toHaveLength(8);
    const circles = root.circle.map((c: {cx: string; cy: string}) => ({x: Number(c.cx), y: Number(c.cy)}));
    for (const bar of bars) {
      // M x−3,low H x+3 M x,low V high M x−3,high H x+3
      const [low, x, high] = /^M[\d.]+,([\d.]+)H[\d.]+M([\d.]+),[\d.]+V([\d.]+)/.exec(bar.d)!.slice(1).map(Number);
      const title = String(bar.title[0]);
      const [label, batch, mean, sd] = /^(.*), (\d+): ([\d.]+) ± ([\d.]+)$/.exec(title)!.slice(1);
      const source = withSd.find((s) => s.label === label)!.points.find((p) => p.x === Number(batch))!;
      expect(Number(mean)).toBeCloseTo(source.y * 100, 1);
      expect(Number(sd)).toBeCloseTo(source.sd * 100, 1);
      // The bar is centred on its point and spans 2·sd on the axis scale (0.05 px rounding per end).
      const point = circles.find((c: {x: number; y: number}) => Math.abs(c.x - x) < 0.01 &&
          Math.abs(c.y - (low + high) / 2) < 0.1);
      expect(point).toBeDefined();
      expect(low - high).toBeCloseTo(2 * source.sd * perUnit, 0);
      expect(high).toBeGreaterThanOrEqual(76);
      expect(low).toBeLessThanOrEqual(406);
    }
    // The two series are shifted apart sideways so their bars at the same batch size do not overlap.
    const xsAt = (k: number) => root.polyline.map((l: {points: string}) => Number(l.points.split(' ')[k].split(',')[0]));
    expect(xsAt(0)[1] - xsAt(0)[0]).toBeGreaterThan(2 * 3);
  });
});

/** 48 tiny 4×4 "images" of two classes. */
function tinyData(): Dataset {
  const images = new Float32Array(48 * 16);
  const labels = new Uint8Array(48);
  let s = 1;
  for (let i = 0; i < 48; i++) {
    labels[i] = i % 2;
    for (let j = 0; j < 16; j++) {
      s = (s * 16807) % 2147483647;
      images[i * 16 + j] = (s / 2147483647) * 0.5 + (labels[i] === 1 && j < 8 ? 0.5 : 0);
    }
  }
  return {images, labels, count: 48, height: 4, width: 4};
}

describe('fairness by construction', () => {
  const data = tinyData();
  const shape = {arch: 'mlp' as const, height: 4, width: 4, hidden: 16};

  it('every layer starts from the same Dense weights', () => {
    const kernels = VARIANTS.map((v) => {
      const model = buildModel(v, shape, 5, 100);
      const values = model.layers.filter((l) => l.getClassName() === 'Dense')
          .map((l) => Array.from(l.getWeights()[0].dataSync()));
      model.dispose();
      return values;
    });
    for (const k of kernels.slice(1)) expect(k).toEqual(kernels[0]);
    const other = buildModel(VARIANTS[0], shape, 6, 100);
    expect(Array.from(other.layers[0].getWeights()[0].dataSync())).not.toEqual(kernels[0][0]);
    other.dispose();
  });

  it('puts the layer under test after each hidden Dense or Conv2D and before its ReLU', () => {
    for (const arch of ['mlp', 'cnn'] as const) {
      for (const v of VARIANTS) {
        const model = buildModel(v, {...shape, arch}, 1, 100);
        const names = model.layers.map((l) => l.getClassName());
        const norm = v.make == null ? [] : [v.make(16, arch, 100).getClassName()];
        const block = (weighted: string) => [weighted, ...norm, 'Activation'];
        expect(names).toEqual(arch === 'mlp' ?
          [...block('Dense'), ...block('Dense'), 'Dense'] :
          [...block('Conv2D'), 'MaxPooling2D', ...block('Conv2D'), 'MaxPooling2D', 'Flatten', 'Dense']);
        if (v.key === 'groupNorm') {
          const groups = model.layers.filter((l) => l.getClassName() === 'GroupNormalization')
              .map((l) => l.getConfig().groups);
          expect(groups).toEqual(arch === 'mlp' ? [1, 1] : [2, 4]); // 16 units / 16; 8 and 16 filters / 4
        }
        model.dispose();
      }
    }
  });

  for (const key of ['batchNorm', 'batchRenorm', 'groupNorm']) {
    it(`two runs of ${key} with the same seed give identical predictions; another seed does not`, async () => {
      const variant = VARIANTS.find((v) => v.key === key)!;
      const run = async (seed: number) => {
        const optimizer = tf.train.momentum(0.01, 0.9);
        const r = await trainRun(variant, data, {shape, batchSize: 4, epochs: 2, seed, optimizer});
        const out = predict(r.model, data, shape);
        r.model.dispose();
        optimizer.dispose();
        return {out, steps: r.steps};
      };
      const a = await run(3);
      const b = await run(3);
      const c = await run(4);
      expect(a.steps).toBe(24);
      expect(Buffer.from(b.out.buffer).equals(Buffer.from(a.out.buffer))).toBe(true);
      expect(Buffer.from(c.out.buffer).equals(Buffer.from(a.out.buffer))).toBe(false);
    });
  }
});

describe('the new variants', () => {
  const data = tinyData();
  const shape = {arch: 'mlp' as const, height: 4, width: 4, hidden: 16};
  const variant = (key: string) => VARIANTS.find((v) => v.key === key)!;

  it('scales the paper\'s warm-up (5k plain, dmax at 25k, rmax at 40k) to the run, rmax reached at half of it', () => {
    // A run of 80k steps gets exactly the paper's schedule.
    expect(scaledRenormWarmup(80000)).toEqual({plainSteps: 5000, dmaxReachedAt: 25000, rmaxReachedAt: 40000});
    expect(scaledRenormWarmup(3200)).toEqual({plainSteps: 200, dmaxReachedAt: 1000, rmaxReachedAt: 1600});
    const model = buildModel(variant('batchRenormWarmup'), shape, 1, 3200);
    const configs = model.layers.filter((l) => l.getClassName() === 'BatchRenormLayer').map((l) => l.getConfig());
    expect(configs).toHaveLength(2);
    for (const c of configs) {
      expect(c.renormWarmup).toEqual({plainSteps: 200, dmaxReachedAt: 1000, rmaxReachedAt: 1600});
      expect(c.renormClipping).toEqual({rmax: 3, rmin: 1 / 3, dmax: 5});
    }
    model.dispose();
  });

  it('unbiasedVariance changes only the moving variance: m/(m−1) times the biased one, less the initial value', async () => {
    const trained = async (key: string) => {
      const optimizer = tf.train.momentum(0.01, 0.9);
      const r = await trainRun(variant(key), data, {shape, batchSize: 4, epochs: 1, seed: 3, optimizer});
      optimizer.dispose();
      const values = r.model.weights.map((w) => ({name: w.originalName.replace(/_BatchNormLayer\d+|_Dense\d+/, ''),
        values: Array.from(w.read().dataSync())}));
      r.model.dispose();
      return {values, steps: r.steps};
    };
    const biased = await trained('batchNorm');
    const unbiased = await trained('batchNormUnbiased');
    expect(unbiased.values.map((w) => w.name)).toEqual(biased.values.map((w) => w.name));
    const m = 4;
    const initialWeight = 0.99 ** biased.steps; // what is left of the initial moving variance 1
    let compared = 0;
    biased.values.forEach((b, i) => {
      const u = unbiased.values[i].values;
      if (!b.name.endsWith('moving_variance')) {
        expect(u).toEqual(b.values); // same training: bit-identical kernels, γ, β and moving means
        return;
      }
      b.values.forEach((v, j) => {
        const expected = m / (m - 1) * (v - initialWeight) + initialWeight;
        expect(Math.abs(u[j] - expected)).toBeLessThan(1e-5 * Math.max(1, expected));
        compared++;
      });
    });
    expect(compared).toBe(2 * shape.hidden);
  });
});

/** Float64 forward pass in training mode of the batchNorm MLP (Dense → BN → ReLU, twice, Dense → softmax). */
function referenceTrainingMode(model: tfl.LayersModel, data: Dataset, batchSize: number): Float64Array {
  const layers = model.layers;
  const w = (i: number) => layers[i].getWeights().map((t) => Array.from(t.dataSync()));
  const dense = (x: number[][], i: number) => {
    const [kernel, bias] = w(i);
    const units = bias.length;
    return x.map((row) => Array.from({length: units}, (_, u) =>
      row.reduce((a, v, k) => a + v * kernel[k * units + u], bias[u])));
  };
  const bn = (x: number[][], i: number) => {
    const [gamma, beta] = w(i);
    return x.map((row) => row.map((v, c) => {
      const mean = x.reduce((a, r) => a + r[c], 0) / x.length;
      const variance = x.reduce((a, r) => a + (r[c] - mean) ** 2, 0) / x.length;
      return gamma[c] * (v - mean) / Math.sqrt(variance + 1e-3) + beta[c];
    }));
  };
  const relu = (x: number[][]) => x.map((row) => row.map((v) => Math.max(v, 0)));
  const out = new Float64Array(data.count * 10);
  const size = data.height * data.width;
  for (let start = 0; start < data.count; start += batchSize) {
    const n = Math.min(batchSize, data.count - start);
    const x = Array.from({length: n}, (_, k) => Array.from(data.images.subarray((start + k) * size, (start + k + 1) * size)));
    const logits = dense(relu(bn(dense(relu(bn(dense(x, 0), 1)), 3), 4)), 6);
    logits.forEach((row, k) => {
      const top = Math.max(...row);
      const e = row.map((v) => Math.exp(v - top));
      const sum = e.reduce((a, b) => a + b, 0);
      e.forEach((v, c) => { out[(start + k) * 10 + c] = v / sum; });
    });
  }
  return out;
}

describe('predicting in training mode', () => {
  const data = tinyData();
  const shape = {arch: 'mlp' as const, height: 4, width: 4, hidden: 16};
  const trained = async (key: string) => {
    const optimizer = tf.train.momentum(0.05, 0.9);
    const r = await trainRun(VARIANTS.find((v) => v.key === key)!, data, {shape, batchSize: 4, epochs: 1, seed: 2, optimizer});
    optimizer.dispose();
    return r.model;
  };

  it('normalizes each test batch with its own statistics (float64 reference), and moves the moving statistics', async () => {
    const model = await trained('batchNorm');
    const movingMean = () => Array.from(model.layers[1].getWeights()[2].dataSync());
    const before = movingMean();
    const tensors = tf.memory().numTensors;
    for (const batch of [2, 5, 32]) { // 48 = 24·2 = 9·5 + 3 = 32 + 16: full and partial last batches
      const got = predictTrainingMode(model, data, shape, batch);
      const want = referenceTrainingMode(model, data, batch);
      let worst = 0;
      want.forEach((v, i) => { worst = Math.max(worst, Math.abs(got[i] - v)); });
      expect(worst).toBeLessThan(1e-4);
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(movingMean()).not.toEqual(before); // why the study evaluates on a copy
    model.dispose();
  });

  it('batch statistics of a batch of one give β, so one prediction for every input: tfjs\'s built-in layer agrees', async () => {
    const model = await trained('tfjs');
    const computed = batchOfOnePrediction(model);
    const size = 16;
    for (const k of [0, 1, 7, 30]) {
      const got = tf.tidy(() => (model.apply(tf.tensor(data.images.subarray(k * size, (k + 1) * size), [1, size]),
          {training: true}) as tf.Tensor).dataSync());
      Array.from(got).forEach((v, c) => expect(Math.abs(v - computed[c])).toBeLessThan(1e-6));
    }
    model.dispose();
  });
});

/** The end-to-end runs train up to 21 small models; a machine shared with other jobs can slow them tenfold. */
const E2E_TIMEOUT = 600_000;

describe('the study end to end on a few real MNIST examples', () => {
  it('trains every layer at every batch size, reloads bit-identically, writes JSON and SVG', async () => {
    const out = tempDir();
    const lines: string[] = [];
    try {
      const result = await main({
        examples: 32, batchSizes: [2, 4, 32], testExamples: 100, backend: 'cpu', outDir: out, progress: false,
        log: (line) => lines.push(line),
      });
      expect(result.runs).toHaveLength(VARIANTS.length * 3);
      for (const r of result.runs) {
        expect(r.examplesSeen).toBe(32);
        expect(r.steps).toBe(32 / r.batchSize);
        expect(r.learningRate).toBeCloseTo(0.05 * r.batchSize / 32, 12);
        expect(r.reloadBitIdentical).toBe(true);
        expect(r.testAccuracy).toBeGreaterThanOrEqual(0);
        expect(r.testAccuracy).toBeLessThanOrEqual(1);
      }
      const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
      expect(json.runs).toEqual(JSON.parse(JSON.stringify(result.runs)));
      const svg = fs.readFileSync(path.join(out, 'accuracy.svg'), 'utf8');
      expect(XMLValidator.validate(svg)).toBe(true);
      expect(svg.match(/<polyline/g)).toHaveLength(VARIANTS.length);
      expect(svg).not.toContain('error-bar'); // one seed: no spread to show
      expect(fs.readdirSync(path.join(out, 'models')).sort())
          .toEqual(VARIANTS.flatMap((v) => [`${v.key}-batch2`, `${v.key}-batch4`, `${v.key}-batch32`]).sort());
      const table = lines.join('\n');
      for (const v of VARIANTS) expect(table).toContain(v.label);
      expect(table).toMatch(/linear scaling/);

      // PreciseBN reuses BatchNormLayer's trained model and replaces only its moving statistics by the
      // exact mean and unbiased variance over the training images (float64 reference from the same subset).
      const run = (layer: string, batchSize: number) => result.runs.find((r) => r.layer === layer && r.batchSize === batchSize)!;
      expect(run('preciseBN', 2).trainedAs).toBe('batchNorm');
      expect(run('preciseBN', 2).steps).toBe(run('batchNorm', 2).steps);
      const load = (name: string) => tfl.loadLayersModel(fileSystem(path.join(out, 'models', name)));
      const [precise, plain] = [await load('preciseBN-batch2'), await load('batchNorm-batch2')];
      const weights = (m: tfl.LayersModel) => m.weights.map((w) => Array.from(w.read().dataSync()));
      const [pw, bw] = [weights(precise), weights(plain)];
      const statistic = precise.weights.map((w) => /moving_(mean|variance)$/.test(w.originalName));
      pw.forEach((v, i) => {
        if (statistic[i]) expect(v).not.toEqual(bw[i]); else expect(v).toEqual(bw[i]);
      });
      const train = subset(readSplit(defaultDataDir(), 'train'), permutation(60000, seededRandom(1)).subarray(0, 32));
      const [kernel, bias] = precise.layers[0].getWeights().map((t) => Array.from(t.dataSync()));
      const units = bias.length;
      const h = Array.from({length: train.count}, (_, n) => Array.from({length: units}, (_, u) => {
        let sum = bias[u];
        for (let k = 0; k < 784; k++) sum += train.images[n * 784 + k] * kernel[k * units + u];
        return sum;
      }));
      const [movingMean, movingVariance] = precise.layers[1].getWeights().slice(2).map((t) => t.dataSync());
      for (let u = 0; u < units; u++) {
        const mean = h.reduce((a, row) => a + row[u], 0) / h.length;
        const variance = h.reduce((a, row) => a + (row[u] - mean) ** 2, 0) / (h.length - 1);
        expect(Math.abs(movingMean[u] - mean)).toBeLessThan(1e-4 * Math.max(1, Math.abs(mean)));
        expect(Math.abs(movingVariance[u] - variance)).toBeLessThan(1e-4 * Math.max(1, variance));
      }
      precise.dispose();

      // The training-mode table: the batch-norm models at the smallest and largest batch size only.
      const testData = subset(readSplit(defaultDataDir(), 't10k'), Array.from({length: 100}, (_, i) => i));
      const labels = testData.labels;
      const withTable = result.runs.filter((r) => r.trainingMode != null).map((r) => `${r.layer}/${r.batchSize}`);
      expect(withTable.sort()).toEqual(['batchNorm/2', 'batchNorm/32', 'tfjs/2', 'tfjs/32']);
      for (const r of result.runs.filter((x) => x.trainingMode != null)) {
        const [b32, b2, b1] = r.trainingMode!.batches;
        expect(r.trainingMode!.examples).toBe(100); // all 100: fewer than TRAINING_MODE_EXAMPLES
        expect(r.trainingMode!.inferenceAccuracy).toBe(r.testAccuracy);
        expect([b32.testBatch, b2.testBatch, b1.testBatch]).toEqual([32, 2, 1]);
        expect(b32.error).toBeNull();
        expect(b2.error).toBeNull();
        const predicted = r.trainingMode!.batchOfOne.predictedClass;
        expect(r.trainingMode!.batchOfOne.accuracy).toBe(labels.filter((l) => l === predicted).length / 100);
        if (r.layer === 'tfjs') {
          // tfjs's built-in layer normalizes a batch of one: every value becomes β, as computed.
          expect(b1.accuracy).toBe(r.trainingMode!.batchOfOne.accuracy);
        } else if (b1.error != null) {
          expect(b1.error).toMatch(/one value per channel/); // BatchNormLayer refuses a batch of one
        } else {
          expect(b1.accuracy).toBe(r.testAccuracy); // or normalizes it with its moving statistics
        }
      }
      // Training mode on the copies left the saved model as it was: it still gives the recorded accuracy.
      const probabilities = predict(plain, testData, {arch: 'mlp', height: 28, width: 28, hidden: 128});
      let correct = 0;
      labels.forEach((l, i) => {
        const row = Array.from(probabilities.subarray(i * 10, (i + 1) * 10));
        if (row.indexOf(Math.max(...row)) === l) correct++;
      });
      expect(correct / 100).toBe(run('batchNorm', 2).testAccuracy);
      plain.dispose();
      expect(table).toContain('training mode (each test batch normalized with its own statistics)');
      expect(table).toMatch(/\nBatchNormLayer, batch 32 +\d/);
    } finally {
      fs.rmSync(out, {recursive: true, force: true});
    }
  }, E2E_TIMEOUT);

  it('repeats over seeds: one run per seed, the table showing mean ± sd, the chart error bars', async () => {
    const lines: string[] = [];
    const out = tempDir();
    const result = await main({
      examples: 32, batchSizes: [4, 8], testExamples: 50, backend: 'cpu', outDir: out, progress: false,
      layers: ['none', 'groupNorm'], seed: 5, repeats: 2, log: (line) => lines.push(line),
    });
    const svg = fs.readFileSync(path.join(out, 'accuracy.svg'), 'utf8');
    fs.rmSync(out, {recursive: true, force: true});
    const root = parseSvg(svg).svg[0];
    const bars = root.path.filter((p: {class: string}) => p.class === 'error-bar').map((p: {title: unknown[]}) => String(p.title[0]));
    expect(bars.sort()).toEqual(['GroupNormLayer', 'no normalization'].flatMap((label) => [4, 8].map((b) => {
      const {mean, sd} = meanAccuracy(result, label === 'GroupNormLayer' ? 'groupNorm' : 'none', b);
      return `${label}, ${b}: ${(mean * 100).toFixed(1)} ± ${(sd * 100).toFixed(1)}`;
    })).sort());
    expect(result.runs.map((r) => `${r.layer}/${r.batchSize}/${r.seed}`).sort()).toEqual([
      'groupNorm/4/5', 'groupNorm/4/6', 'groupNorm/8/5', 'groupNorm/8/6',
      'none/4/5', 'none/4/6', 'none/8/5', 'none/8/6']);
    const pair = result.runs.filter((r) => r.layer === 'none' && r.batchSize === 4).map((r) => r.testAccuracy);
    const {mean, sd} = meanAccuracy(result, 'none', 4);
    expect(mean).toBeCloseTo((pair[0] + pair[1]) / 2, 12);
    expect(sd).toBeCloseTo(Math.abs(pair[0] - pair[1]) / Math.SQRT2, 12);
    const row = lines.find((l) => l.startsWith('no normalization'))!;
    expect(row).toContain(`${(mean * 100).toFixed(1)}±${(sd * 100).toFixed(1)}`);
  }, E2E_TIMEOUT);
});

describe('the training-mode table', () => {
  it('shows mean ± sd over seeds, "error" where the model threw, and the error', () => {
    const record = (seed: number, accuracies: Array<number | null>, testAccuracy: number) => ({
      layer: 'batchNorm', label: 'BatchNormLayer', batchSize: 2, seed, learningRate: 0, steps: 1, examplesSeen: 2,
      testAccuracy, firstLoss: 0, lastLoss: 0, msPerStep: 0, reloadBitIdentical: true, trainedAs: null,
      trainingMode: {
        examples: 100, inferenceAccuracy: testAccuracy,
        batches: [32, 2, 1].map((testBatch, i) => ({testBatch, accuracy: accuracies[i],
          error: accuracies[i] == null ? 'refused\nsecond line' : null})),
        batchOfOne: {predictedClass: 1, accuracy: 0.1},
      },
    });
    const result = {
      options: {batchSizes: [2], repeats: 2}, layers: [{key: 'batchNorm', label: 'BatchNormLayer', settings: ''}],
      runs: [record(1, [0.9, 0.5, null], 0.7), record(2, [0.8, 0.6, null], 0.8)],
    } as unknown as StudyResult;
    const lines = formatTrainingModeTable(result);
    const row = lines.find((l) => l.startsWith('BatchNormLayer, batch 2'))!;
    // mean and sample sd of {0.7, 0.8}, {0.9, 0.8}, {0.5, 0.6}: 75.0±7.1, 85.0±7.1, 55.0±7.1
    expect(row.split(/ +/).slice(3)).toEqual(['75.0±7.1', '85.0±7.1', '55.0±7.1', 'error', '10.0±0.0']);
    expect(lines).toContain('BatchNormLayer at test batch 1: refused');
    expect(lines.some((l) => /remaining 4 of the 100 test images/.test(l))).toBe(true);
    expect(formatTrainingModeTable({...result, runs: result.runs.map((r) => ({...r, trainingMode: null}))})).toEqual([]);
  });
});

describe('command-line flags', () => {
  it('parses the documented flags', () => {
    expect(parseArgs(['--examples', '1000', '--batch-sizes=32,2,8', '--model', 'cnn', '--backend', 'cpu',
      '--seed', '7', '--repeats', '3', '--epochs', '2', '--data-dir', '/d', '--layers', 'none,groupNorm',
      '--lr', '0.1'])).toEqual({
      examples: 1000, batchSizes: [2, 8, 32], model: 'cnn', backend: 'cpu', seed: 7, repeats: 3, epochs: 2, dataDir: '/d',
      layers: ['none', 'groupNorm'], baseLearningRate: 0.1,
    });
    expect(parseArgs(['--help'])).toBe('help');
  });

  it('rejects bad values with the flag named', () => {
    expect(() => parseArgs(['--batch-sizes', '1,2'])).toThrow(/--batch-sizes needs integers >= 2/);
    expect(() => parseArgs(['--model', 'resnet'])).toThrow(/--model must be mlp or cnn/);
    expect(() => parseArgs(['--examples', 'many'])).toThrow(/--examples needs a positive integer/);
    expect(() => parseArgs(['--frobnicate', '1'])).toThrow(/Unknown flag '--frobnicate'/);
  });

  it('refuses the CNN on wasm, which cannot train Conv2D', async () => {
    await expect(main({model: 'cnn', backend: 'wasm', progress: false, outDir: null, log: () => undefined}))
        .rejects.toThrow(/use --backend cpu with --model cnn/);
  });
});
