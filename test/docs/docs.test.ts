/**
 * Runs every runnable code block of README.md and docs/*.md verbatim: Node
 * blocks in Node, page blocks in headless Chromium (Debian's /usr/bin/chromium
 * through playwright-core). The marking convention is in test/docs/blocks.ts.
 * Needs `npm run build` first (.ci/run builds before jest).
 */
import {spawnSync} from 'child_process';
import * as esbuild from 'esbuild';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type {Page} from 'playwright-core';
import {Browser} from '../browser/browser';
import {makeApp} from '../packaging/bundle_app';
import {DocBlock, docFiles, parseBlocks, ROOT} from './blocks';

const ORIGIN = 'http://docs.test';
const TIMEOUT_MS = 180_000;
const TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.map': 'application/json',
  '.json': 'application/json', '.wasm': 'application/wasm', '.bin': 'application/octet-stream',
};

const blocks = docFiles().flatMap(parseBlocks);
const named = (kind: DocBlock['kind']) =>
  blocks.filter((b) => b.kind === kind).map((b) => [`${b.file}:${b.line} (${b.lang})`, b] as const);

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'esm', 'index.js'))) throw new Error('run `npm run build` first');
});

it('finds the blocks the docs mark as runnable', () => {
  expect(named('node').length + named('page-module').length + named('page-html').length).toBeGreaterThan(2);
});

describe('Node blocks', () => {
  const scratch = path.join(ROOT, '.doc-test');  // inside the package, so `tfjs-normalization` resolves to it

  it.each(named('node'))('%s runs', (where, block) => {
    fs.mkdirSync(scratch, {recursive: true});
    const file = path.join(scratch, `${block.file.replace(/\W/g, '_')}_${block.line}.mjs`);
    const code = block.lang.startsWith('t') ?
      esbuild.transformSync(block.code, {loader: 'ts', format: 'esm', sourcefile: where}).code : block.code;
    fs.writeFileSync(file, code);
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-normalization-doc-'));
    try {
      const run = spawnSync(process.execPath, [file], {cwd, encoding: 'utf8', timeout: TIMEOUT_MS});
      if (run.status !== 0) {
        throw new Error(`${where} failed (exit ${run.status ?? run.signal}):\n${(run.stderr || run.stdout).slice(-3000)}`);
      }
    } finally {
      fs.rmSync(cwd, {recursive: true, force: true});
      fs.rmSync(file, {force: true});
    }
  }, TIMEOUT_MS);
});

describe('page blocks in headless Chromium', () => {
  const browser = new Browser();
  let app: string;

  beforeAll(async () => {
    app = makeApp();
    await browser.launch();
  }, TIMEOUT_MS);
  afterAll(async () => {
    await browser.context?.close();
    fs.rmSync(app, {recursive: true, force: true});
    fs.rmSync(browser.profile, {recursive: true, force: true});
  });

  /** A page on ORIGIN: `/` is `html`, `/app.js` is `script`, anything else a file of the app folder. */
  async function openPage(html: string, script = ''): Promise<{page: Page; errors: string[]; logs: string[]}> {
    const page = await browser.context!.newPage();
    const errors: string[] = [];
    const logs: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
      if (message.type() === 'log') logs.push(message.text());
    });
    await page.route(`${ORIGIN}/**`, (route) => {
      const urlPath = decodeURIComponent(new URL(route.request().url()).pathname);
      if (urlPath === '/') return route.fulfill({contentType: 'text/html', body: html});
      if (urlPath === '/app.js') return route.fulfill({contentType: 'text/javascript', body: script});
      const file = path.join(app, path.normalize(urlPath));
      if (!file.startsWith(app + path.sep) || !fs.existsSync(file)) return route.fulfill({status: 404, body: ''});
      return route.fulfill({contentType: TYPES[path.extname(file)] ?? 'text/plain', body: fs.readFileSync(file)});
    });
    return {page, errors, logs};
  }

  it.each(named('page-module'))('%s runs as a bundled module', async (where, block) => {
    const bundle = await esbuild.build({
      stdin: {contents: block.code, resolveDir: app, loader: block.lang.startsWith('t') ? 'ts' : 'js', sourcefile: where},
      bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent', absWorkingDir: app,
    });
    const {page, errors} = await openPage('<!doctype html><html><body></body></html>', bundle.outputFiles[0].text);
    try {
      await page.goto(`${ORIGIN}/`);
      // A string, not a function: ts-jest would compile a function's import() into require().
      const outcome = await page.evaluate(`import('${ORIGIN}/app.js').then(() => 'ok', (e) => String(e?.stack ?? e))`);
      if (outcome !== 'ok' || errors.length > 0) {
        throw new Error(`${where} failed in Chromium: ${[outcome, ...errors].filter((t) => t !== 'ok').join('\n')}`);
      }
    } finally {
      await page.close();
    }
  }, TIMEOUT_MS);

  it.each(named('page-html'))('%s runs as a page and logs', async (where, block) => {
    const {page, errors, logs} = await openPage(block.code);
    try {
      await page.goto(`${ORIGIN}/`);
      const deadline = Date.now() + TIMEOUT_MS - 10_000;
      while (logs.length === 0 && errors.length === 0 && Date.now() < deadline) await page.waitForTimeout(200);
      if (errors.length > 0) throw new Error(`${where} failed in Chromium:\n${errors.join('\n')}`);
      if (logs.length === 0) throw new Error(`${where} never called console.log (the runner waits for it)`);
    } finally {
      await page.close();
    }
  }, TIMEOUT_MS);
});
