/**
 * Plumbing for the browser tests: the static server (scripts/serve.mjs as a
 * child process), Debian's Chromium driven by playwright-core, and a minimal
 * sequential test runner that ends with "N passed, N failed".
 */
import {ChildProcess, spawn} from 'node:child_process';
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {BrowserContext, chromium, Page} from 'playwright-core';
import type * as TF from '@tensorflow/tfjs';
import type * as TFNorm from '../../src/index';

export const ROOT = join(__dirname, '..', '..');
export const RESULTS = join(ROOT, 'results', 'browser');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// Headless flags that work on these machines; WebGL runs on SwiftShader (software Vulkan through ANGLE).
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
];

/** What the demo page publishes on `window` (examples/browser/demo.js). */
export interface DemoResult {
  done: boolean;
  ok: boolean;
  error?: string;
  backend: string;
  webglVersion: number | null;
  renderer: string | null;
  float32Textures: boolean | null;
  url: string;
  epochs: number;
  losses: number[];
  accuracy: number;
  layerClasses: string[];
  weights: {name: string; shape: number[]; trainable: boolean; bitIdentical: boolean; maxDiff: number}[];
  maxWeightDiff: number;
  maxPredictionDiff: number;
  numTensors: number;
}

/** The page's globals, for typing code that runs inside `page.evaluate`. */
export type PageWindow = Window & {
  tf: typeof TF;
  tfnorm: typeof TFNorm;
  demoResult?: DemoResult;
  demoModel?: TF.LayersModel;
};

/** Starts `node scripts/serve.mjs` on a free port; resolves to its base URL. */
export function startServer(): Promise<{url: string; stop: () => void}> {
  const child: ChildProcess = spawn(process.execPath, [join(ROOT, 'scripts', 'serve.mjs')], {
    env: {...process.env, PORT: '0'}, stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('exit', (code) => reject(new Error(`static server exited with code ${code}: ${out}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (match) {
        child.removeAllListeners('exit');
        resolve({url: match[1], stop: () => child.kill()});
      }
    });
  });
}

/** A Chromium profile in a fresh temp folder; `relaunch` reopens the same profile (IndexedDB kept). */
export class Browser {
  readonly profile = mkdtempSync(join(tmpdir(), 'tfjs-normalization-chromium-'));
  context: BrowserContext | null = null;

  async launch(): Promise<BrowserContext> {
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
      viewport: {width: 960, height: 900},
    });
    return this.context;
  }

  async relaunch(): Promise<BrowserContext> {
    await this.context?.close();
    return this.launch();
  }

  /** A page on the server's origin with tfjs and the IIFE bundle loaded, page errors collected. */
  async blankPage(url: string, scripts = ['tfjs/tf.min.js', 'dist/browser/tfjs-normalization.min.js']):
      Promise<{page: Page; errors: string[]}> {
    const page = await this.context!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${url}examples/browser/`);  // any URL on the origin; IndexedDB is per origin
    await page.setContent('<!doctype html><html><body></body></html>');
    for (const script of scripts) await page.addScriptTag({url: url + script});
    return {page, errors};
  }

  async close(): Promise<void> {
    await this.context?.close();
    rmSync(this.profile, {recursive: true, force: true});
  }
}

type Outcome = 'passed' | 'failed' | 'not run';
interface TestCase {name: string; fn: () => Promise<void>; requires?: () => string | null}

/** Sequential tests; `requires` returns a reason when a test cannot run on this machine. */
export class Runner {
  private readonly tests: TestCase[] = [];
  private readonly outcomes: Outcome[] = [];

  test(name: string, fn: () => Promise<void>, requires?: () => string | null): void {
    this.tests.push({name, fn, requires});
  }

  async run(): Promise<{passed: number; failed: number; notRun: number}> {
    for (const {name, fn, requires} of this.tests) {
      const missing = requires?.() ?? null;
      if (missing != null) {
        console.log(`NOT RUN  ${name}\n         ${missing}`);
        this.outcomes.push('not run');
        continue;
      }
      const start = Date.now();
      try {
        await fn();
        console.log(`PASS     ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
        this.outcomes.push('passed');
      } catch (err) {
        console.log(`FAIL     ${name}\n         ${String((err as Error).stack ?? err).replace(/\n/g, '\n         ')}`);
        this.outcomes.push('failed');
      }
    }
    const count = (o: Outcome) => this.outcomes.filter((x) => x === o).length;
    return {passed: count('passed'), failed: count('failed'), notRun: count('not run')};
  }
}

/** Writes the summary .ci/run adds to jest's counts. */
export function writeSummary(summary: {passed: number; failed: number; notRun: number}): void {
  mkdirSync(RESULTS, {recursive: true});
  writeFileSync(join(RESULTS, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
