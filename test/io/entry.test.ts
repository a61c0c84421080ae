import * as tf from '@tensorflow/tfjs-core';
import * as esbuild from 'esbuild';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');

describe('file:// routers when another package already provides them', () => {
  it('importing tfjs-normalization/node leaves an existing file:// router (tfjs-node) alone', () => {
    const other: tf.io.IOHandler = {load: async () => ({})};
    tf.io.registerLoadRouter(((url: string) => url.startsWith('file://') ? other : null) as never);
    tf.io.registerSaveRouter(((url: string) => url.startsWith('file://') ? other : null) as never);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const node = require('../../src/io') as typeof import('../../src/io');
    expect(node.registerFileSystemRouters()).toBe(false);
    expect(tf.io.getLoadHandlers('file:///tmp/m/model.json')).toEqual([other]);
    expect(tf.io.getSaveHandlers('file:///tmp/m')).toEqual([other]);
  });
});

describe('browser bundles', () => {
  const bundle = (entry: string) => esbuild.build({
    entryPoints: [path.join(ROOT, entry)], bundle: true, platform: 'browser', write: false, metafile: true,
    logLevel: 'silent', external: ['@tensorflow/*'], absWorkingDir: ROOT,
  });

  it('the main entry pulls in no Node built-in and, of src/io, only the browser-safe validate.ts and file:// hint', async () => {
    const result = await bundle('src/index.ts');
    const inputs = Object.keys(result.metafile!.inputs);
    expect(inputs.some((f) => f.startsWith('src/layers/'))).toBe(true);
    expect(inputs.filter((f) => f.startsWith('src/io/')).sort()).toEqual(['src/io/file_url_hint.ts', 'src/io/validate.ts']);
    // Besides src/, only the package's declared runtime dependency (the edit distance for "did you mean").
    const {dependencies} = require('../../package.json') as {dependencies: Record<string, string>};
    expect(Object.keys(dependencies)).toEqual(['fastest-levenshtein']);
    expect(inputs.filter((f) => !f.startsWith('src/'))).toEqual(['node_modules/fastest-levenshtein/esm/mod.js']);
  });

  it('the node entry does need fs (so the check above can fail)', async () => {
    await expect(bundle('src/io/index.ts')).rejects.toThrow(/Could not resolve "fs"/);
  });
});
