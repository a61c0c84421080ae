/**
 * A browser app importing `tfjs-normalization` (the main entry, as the README
 * shows) through esbuild and webpack 5: the bundler must take the package's ES
 * build (package.json "exports", conditions browser/import) and tfjs's ES build,
 * never a Node build, and the package may add at most 60 KB to tfjs alone.
 * Each bundler's own "tfjs alone" app (same code without the package) is the
 * baseline. Needs `npm run build` first (.ci/run builds before jest).
 */
import * as fs from 'fs';
import * as path from 'path';
import {appSource, Bundle, bundleWithEsbuild, bundleWithWebpack, makeApp, ROOT} from './bundle_app';

const MAX_ADDED_BYTES = 60_000;
const ESM_BUILD = path.join(ROOT, 'dist', 'esm') + path.sep;
// Files that only a Node build of tfjs (or of this package) would bring in.
const NODE_ONLY_INPUTS = [
  /tf-(core|layers|data|converter|backend-\w+)\.node\.js$/,
  /[\\/]node_modules[\\/](util|node-fetch|whatwg-url|tr46)[\\/]/,
  new RegExp(`^${path.join(ROOT, 'dist', 'cjs').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
];
const NODE_ONLY_CODE = [/require\(["'](fs|path|util|node-fetch|worker_threads)["']\)/];

const BUNDLERS: Array<[string, (app: string, source: string) => Promise<Bundle>]> = [
  ['esbuild', bundleWithEsbuild],
  ['webpack 5', bundleWithWebpack],
];

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'esm', 'index.js'))) throw new Error('run `npm run build` first');
});

describe.each(BUNDLERS)('a browser app bundled with %s', (name, bundle) => {
  let alone: Bundle;
  let withPackage: Bundle;
  let app: string;

  beforeAll(async () => {
    app = makeApp();
    alone = await bundle(app, appSource(false));
    withPackage = await bundle(app, appSource(true));
  }, 900_000);
  afterAll(() => fs.rmSync(app, {recursive: true, force: true}));

  it('takes the package from its ES build and adds nothing else', () => {
    const baseline = new Set(alone.inputs);
    const added = withPackage.inputs.filter((input) => !baseline.has(input));
    expect(added.length).toBeGreaterThan(0);
    // Besides the ES build, only the package's declared runtime dependencies (fastest-levenshtein).
    const {dependencies} = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const ownDependency = (input: string) => Object.keys(dependencies)
        .some((name) => input.includes(`${path.sep}node_modules${path.sep}${name}${path.sep}`));
    expect(added.filter((input) => !input.startsWith(ESM_BUILD) && !ownDependency(input))).toEqual([]);
    expect(added).toContain(path.join(ESM_BUILD, 'index.js'));
  });

  it('holds no Node build of tfjs or of the package, and one tfjs-core', () => {
    for (const pattern of NODE_ONLY_INPUTS) {
      expect(withPackage.inputs.filter((input) => pattern.test(input))).toEqual([]);
    }
    for (const pattern of NODE_ONLY_CODE) expect(withPackage.code).not.toMatch(pattern);
    const coreFolders = new Set(withPackage.inputs
        .map((input) => input.match(/^(.*[\\/]@tensorflow[\\/]tfjs-core)[\\/]/)?.[1])
        .filter((folder) => folder != null));
    expect([...coreFolders]).toEqual([path.join(ROOT, 'node_modules', '@tensorflow', 'tfjs-core')]);
  });

  it(`adds at most ${MAX_ADDED_BYTES} bytes to tfjs alone`, () => {
    const added = Buffer.byteLength(withPackage.code) - Buffer.byteLength(alone.code);
    // Printed for the docs and the report; the bound is the test.
    console.log(`${name}: tfjs alone ${Buffer.byteLength(alone.code)} bytes, with tfjs-normalization ` +
        `${Buffer.byteLength(withPackage.code)} bytes (+${added})`);
    expect(added).toBeGreaterThan(0);
    expect(added).toBeLessThanOrEqual(MAX_ADDED_BYTES);
  });
});
