/**
 * What `npm pack` ships, from `npm pack --dry-run --json` (the list npm itself
 * computes from package.json "files"): every file package.json points to, the
 * LICENSE, every doc, example and image the README and docs link to, nothing
 * outside an allowlist, source maps that carry their sources, and a size bound.
 * Needs `npm run build` first (.ci/run builds before jest).
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
// Bounds with headroom over what ships now (537 kB packed, 1.97 MB unpacked, most of it the three builds'
// source maps, each carrying the sources): a stray folder or a bundled tfjs (MBs) fails them.
const MAX_PACKED_BYTES = 650_000;
const MAX_UNPACKED_BYTES = 2_500_000;
// Everything the tarball may hold.
const ALLOWED = [
  /^package\.json$/, /^README\.md$/, /^LICENSE$/, /^(node|browser)\/package\.json$/,
  /^dist\/cjs\/.+\.(js|d\.ts|js\.map)$/, /^dist\/esm\/(chunks\/)?[\w-]+\.(js|d\.ts|js\.map)$/, /^dist\/esm\/package\.json$/,
  /^dist\/wrap\/\w+\.(mjs|d\.mts)$/, /^dist\/browser\/tfjs-normalization\.min\.js(\.map)?$/,
  /^docs\/[\w-]+\.(md|svg|png)$/, /^examples\/.+\.(ts|js|html)$/, /^bench\/results\.md$/,
];

interface PackReport {size: number; unpackedSize: number; files: Array<{path: string}>}

let report: PackReport;
let shipped: Set<string>;

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cjs', 'index.js'))) throw new Error('run `npm run build` first');
  const json = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {cwd: ROOT, encoding: 'utf8'});
  [report] = JSON.parse(json) as PackReport[];
  shipped = new Set(report.files.map((file) => file.path));
});

/** Every string under `value` (package.json fields, the exports map). */
function strings(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value != null && typeof value === 'object') return Object.values(value).flatMap(strings);
  return [];
}

it('ships every file package.json and the node/ and browser/ stubs point to', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const targets = strings([pkg.main, pkg.module, pkg.types, pkg.unpkg, pkg.jsdelivr, pkg.exports])
      .map((target) => path.posix.normalize(target));
  for (const stub of ['node', 'browser']) {
    const fields = JSON.parse(fs.readFileSync(path.join(ROOT, stub, 'package.json'), 'utf8'));
    targets.push(...strings([fields.main, fields.module, fields.types]).map((t) => path.posix.join(stub, t)));
  }
  expect(targets.length).toBeGreaterThan(20);
  expect(targets.filter((target) => !shipped.has(target))).toEqual([]);
  expect([...shipped].filter((file) => file.startsWith('dist/cjs/')).length).toBeGreaterThan(20);
});

it('ships the Apache-2.0 LICENSE that package.json names', () => {
  expect(shipped.has('LICENSE')).toBe(true);
  const license = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8');
  expect(license).toMatch(/Apache License\s+Version 2\.0, January 2004/);
  expect(license).toMatch(/END OF TERMS AND CONDITIONS/);
  expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).license).toBe('Apache-2.0');
});

it('ships every file the README and docs link to', () => {
  const docs = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`)];
  const missing: string[] = [];
  let links = 0;
  for (const doc of docs) {
    expect(shipped.has(doc)).toBe(true);
    const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;  // web links, anchors in the same file
      links++;
      const file = path.posix.normalize(path.posix.join(path.posix.dirname(doc), target.split('#')[0]));
      if (!shipped.has(file)) missing.push(`${doc} -> ${target}`);
    }
  }
  expect(links).toBeGreaterThan(5);
  expect(missing).toEqual([]);
});

it('ships nothing outside the allowlist, and stays under the size bound', () => {
  expect([...shipped].filter((file) => !ALLOWED.some((pattern) => pattern.test(file)))).toEqual([]);
  expect(report.size).toBeLessThanOrEqual(MAX_PACKED_BYTES);
  expect(report.unpackedSize).toBeLessThanOrEqual(MAX_UNPACKED_BYTES);
});

it('ships source maps that carry the TypeScript sources (src/ does not ship)', () => {
  const maps = [...shipped].filter((file) => file.endsWith('.map'));
  expect(maps.length).toBeGreaterThan(20);
  for (const file of maps) {
    const map = JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8'));
    const sources: string[] = map.sources;
    const contents: Array<string | null> = map.sourcesContent ?? [];
    expect({file, withContent: contents.filter((c) => typeof c === 'string' && c.length > 0).length})
        .toEqual({file, withContent: sources.length});
    // Each inlined source is the file in src/ it names (the IIFE's `tf-global:` shim has no file).
    sources.forEach((source, i) => {
      if (source.startsWith('tf-global:')) return;
      const onDisk = path.resolve(ROOT, path.dirname(file), source);
      expect(contents[i]).toBe(fs.readFileSync(onDisk, 'utf8'));
    });
  }
});

it('keeps tarballs out of git', () => {
  expect(execFileSync('git', ['check-ignore', 'tfjs-normalization-0.1.0.tgz'], {cwd: ROOT, encoding: 'utf8'}).trim())
      .toBe('tfjs-normalization-0.1.0.tgz');
});
