/**
 * The import-time tfjs check (src/tfjs_check.ts) and how Node loads the built
 * package: a second copy of tfjs-core loaded before the package must fail the
 * import with an error that says so and how to fix it; one copy must not; Node's
 * `import` and `require` must share one copy of the package. Runs the built
 * dist/ in child Node processes (`npm run build` first).
 */
import {execFileSync, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {checkTfjsVersion, SUPPORTED_TFJS} from '../../src/tfjs_check';

const ROOT = path.join(__dirname, '..', '..');

/** Runs `code` in a fresh Node process at the repo root; returns exit status, stdout and all output. */
function node(code: string, args: string[] = ['-e']): {status: number | null; output: string; stdout: string} {
  const result = spawnSync(process.execPath, [...args, code], {cwd: ROOT, encoding: 'utf8'});
  return {status: result.status, output: result.stdout + result.stderr, stdout: result.stdout};
}

/** Runs `prelude`, then requires the package in the same Node process; prints 'imported' or the error. */
function importAfter(prelude: string): ReturnType<typeof node> {
  return node(`${prelude}
    try {
      require('tfjs-normalization');
      console.log('imported');
    } catch (error) {
      console.log(error.name + ': ' + error.message);
    }`);
}

beforeAll(() => {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cjs', 'index.js'))) throw new Error('run `npm run build` first');
});

it('fails the import when another copy of tfjs-core loaded first, saying what to do', () => {
  // A second module instance of tfjs-core: load it, drop it from the cache, then the package loads its own.
  const {status, output} = importAfter(`
    const core = require.resolve('@tensorflow/tfjs-core');
    require(core);
    delete require.cache[core];
`);
  expect(status).toBe(0);
  expect(output).not.toMatch(/imported/);
  expect(output).toMatch(/TfjsVersionError: tfjs-normalization: two copies of @tensorflow\/tfjs-core are loaded/);
  expect(output).toMatch(/npm ls @tensorflow\/tfjs-core/);
  expect(output).toMatch(/npm dedupe/);
  expect(output).toContain(SUPPORTED_TFJS);
});

it('fails the import with its own error when tfjs-layers is out of the package\'s reach', () => {
  // What npm does when the app pins another tfjs-core next to @tensorflow/tfjs: it nests tfjs-layers under
  // @tensorflow/tfjs, where this package cannot require it. Simulated by refusing to resolve it.
  const {status, output} = importAfter(`
    const Module = require('module');
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (request.startsWith('@tensorflow/tfjs-layers')) {
        throw Object.assign(new Error("Cannot find module '" + request + "'"), {code: 'MODULE_NOT_FOUND'});
      }
      return resolve.call(this, request, ...rest);
    };
`);
  expect(status).toBe(0);
  expect(output).not.toMatch(/imported/);
  expect(output).toMatch(/TfjsVersionError: tfjs-normalization: @tensorflow\/tfjs-layers cannot be found from this package/);
  expect(output).toMatch(/npm ls @tensorflow\/tfjs-core @tensorflow\/tfjs-layers/);
});

it('fails before registering anything, so the failed import changes nothing', () => {
  // The kernel registry is global (shared by every copy of tfjs-core): it shows whether anything registered.
  const kernels = (twoCopies: boolean) => node(`
    const core = require.resolve('@tensorflow/tfjs-core');
    const first = require(core);
    ${twoCopies ? 'delete require.cache[core];' : ''}
    try { require('tfjs-normalization'); } catch {}
    console.log(JSON.stringify(first.getKernelsForBackend('cpu').map((k) => k.kernelName)
        .filter((name) => name.startsWith('TfjsNormalization'))));`).stdout.trim();
  expect(JSON.parse(kernels(false)).length).toBeGreaterThan(2);
  expect(kernels(true)).toBe('[]');
});

it('imports with one copy of tfjs, from require and from import, sharing one copy of the package', () => {
  const {status, output} = node(`
    import '@tensorflow/tfjs-backend-cpu';
    import * as viaImport from 'tfjs-normalization/node';
    import {createRequire} from 'module';
    const viaRequire = createRequire(import.meta.url)('tfjs-normalization');
    console.log(viaImport.BatchNormLayer === viaRequire.BatchNormLayer, typeof viaImport.fileSystem);`,
  ['--input-type=module', '-e']);
  expect({status, output: output.trim()}).toEqual({status: 0, output: 'true function'});
});

it('rejects tfjs older than the supported floor and accepts the floor and later 4.x', () => {
  expect(() => checkTfjsVersion('@tensorflow/tfjs-core', '4.5.0'))
      .toThrow(/@tensorflow\/tfjs-core 4\.5\.0 is too old; this package needs >=4\.6\.0 <5\.0\.0/);
  expect(() => checkTfjsVersion('@tensorflow/tfjs-layers', '3.21.0')).toThrow(/tfjs-layers 3\.21\.0 is too old/);
  for (const version of ['4.6.0', '4.10.0', '4.22.0']) {
    expect(() => checkTfjsVersion('@tensorflow/tfjs-core', version)).not.toThrow();
  }
});

it('states the same range as package.json peerDependencies and the oldest-tfjs install in compat/', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  expect(pkg.peerDependencies).toEqual({'@tensorflow/tfjs-core': SUPPORTED_TFJS, '@tensorflow/tfjs-layers': SUPPORTED_TFJS});
  const compat = JSON.parse(fs.readFileSync(path.join(ROOT, 'compat', 'package.json'), 'utf8'));
  const floor = SUPPORTED_TFJS.match(/^>=(\S+)/)![1];
  for (const name of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-cpu']) {
    expect(compat.dependencies[name]).toBe(floor);
  }
  expect(execFileSync('git', ['ls-files', 'compat/package-lock.json'], {cwd: ROOT, encoding: 'utf8'}).trim())
      .toBe('compat/package-lock.json');
});
