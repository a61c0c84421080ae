/** The small-batch study's building blocks on small data, and one tiny end-to-end run. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs-core';
import {XMLParser, XMLValidator} from 'fast-xml-parser';
import {main, meanAccuracy, parseArgs} from '../../examples/small_batch_study';
import {Dataset, readSplit, subset} from '../../examples/small_batch_study/data';
import {parseIdx} from '../../examples/small_batch_study/idx';
import {Progress} from '../../examples/small_batch_study/progress';
import {buildModel, VARIANTS} from '../../examples/small_batch_study/model';
import {lineChart} from '../../examples/small_batch_study/svg';
import {predict, trainRun} from '../../examples/small_batch_study/train';

// The study module imports the wasm backend, which outranks cpu; these tests run on cpu.
beforeAll(() => tf.setBackend('cpu'));

/** An IDX file written byte by byte from its definition: 0, 0, type 0x08, rank, big-endian uint32 dims, values. */
function idxBytes(shape: number[], values: number[]): Uint8Array {
  const bytes = [0, 0, 0x08, shape.length];
  for (const d of shape) bytes.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...bytes, ...values]);
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
      const model = buildModel(v, shape, 5);
      const values = model.layers.filter((l) => l.getClassName() === 'Dense')
          .map((l) => Array.from(l.getWeights()[0].dataSync()));
      model.dispose();
      return values;
    });
    for (const k of kernels.slice(1)) expect(k).toEqual(kernels[0]);
    const other = buildModel(VARIANTS[0], shape, 6);
    expect(Array.from(other.layers[0].getWeights()[0].dataSync())).not.toEqual(kernels[0][0]);
    other.dispose();
  });

  it('puts the layer under test after each hidden Dense or Conv2D and before its ReLU', () => {
    for (const arch of ['mlp', 'cnn'] as const) {
      for (const v of VARIANTS) {
        const model = buildModel(v, {...shape, arch}, 1);
        const names = model.layers.map((l) => l.getClassName());
        const norm = v.make == null ? [] : [v.make(16, arch).getClassName()];
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

describe('the study end to end on a few real MNIST examples', () => {
  it('trains every layer at every batch size, reloads bit-identically, writes JSON and SVG', async () => {
    const out = tempDir();
    const lines: string[] = [];
    try {
      const result = await main({
        examples: 64, batchSizes: [2, 32], testExamples: 100, backend: 'cpu', outDir: out, progress: false,
        log: (line) => lines.push(line),
      });
      expect(result.runs).toHaveLength(VARIANTS.length * 2);
      for (const r of result.runs) {
        expect(r.examplesSeen).toBe(64);
        expect(r.steps).toBe(64 / r.batchSize);
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
      expect(fs.readdirSync(path.join(out, 'models')).sort())
          .toEqual(VARIANTS.flatMap((v) => [`${v.key}-batch2`, `${v.key}-batch32`]).sort());
      const table = lines.join('\n');
      for (const v of VARIANTS) expect(table).toContain(v.label);
      expect(table).toMatch(/linear scaling/);
    } finally {
      fs.rmSync(out, {recursive: true, force: true});
    }
  });
  it('repeats over seeds: one run per seed, the table showing mean ± sd', async () => {
    const lines: string[] = [];
    const result = await main({
      examples: 32, batchSizes: [4, 8], testExamples: 50, backend: 'cpu', outDir: null, progress: false,
      layers: ['none', 'groupNorm'], seed: 5, repeats: 2, log: (line) => lines.push(line),
    });
    expect(result.runs.map((r) => `${r.layer}/${r.batchSize}/${r.seed}`).sort()).toEqual([
      'groupNorm/4/5', 'groupNorm/4/6', 'groupNorm/8/5', 'groupNorm/8/6',
      'none/4/5', 'none/4/6', 'none/8/5', 'none/8/6']);
    const pair = result.runs.filter((r) => r.layer === 'none' && r.batchSize === 4).map((r) => r.testAccuracy);
    const {mean, sd} = meanAccuracy(result, 'none', 4);
    expect(mean).toBeCloseTo((pair[0] + pair[1]) / 2, 12);
    expect(sd).toBeCloseTo(Math.abs(pair[0] - pair[1]) / Math.SQRT2, 12);
    const row = lines.find((l) => l.startsWith('no normalization'))!;
    expect(row).toContain(`${(mean * 100).toFixed(1)}±${(sd * 100).toFixed(1)}`);
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
