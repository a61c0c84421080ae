/**
 * Bundles a small browser app the way a user's bundler would, for
 * test/packaging/bundle.test.ts: an app folder whose node_modules links to this
 * package (built dist/) and to the repo's @tensorflow packages, so the bundler
 * sees the package through its package.json "exports" as it would after npm install.
 */
import * as esbuild from 'esbuild';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import webpack from 'webpack';

export const ROOT = path.join(__dirname, '..', '..');

/** The app's entry: tfjs alone, or tfjs plus this package (both kept whole in the bundle). */
export function appSource(withPackage: boolean): string {
  return withPackage ?
    `import * as tf from '@tensorflow/tfjs';
import {batchNorm, batchRenorm, groupNorm} from 'tfjs-normalization';
const model = tf.sequential({layers: [tf.layers.dense({inputShape: [3], units: 4}), batchNorm()]});
Object.assign(globalThis, {tf, model, batchNorm, batchRenorm, groupNorm});
` :
    `import * as tf from '@tensorflow/tfjs';
const model = tf.sequential({layers: [tf.layers.dense({inputShape: [3], units: 4})]});
Object.assign(globalThis, {tf, model});
`;
}

export interface Bundle {
  /** Minified output (webpack's minified by esbuild). */
  code: string;
  /** Every file bundled, as a real path. */
  inputs: string[];
}

/** A fresh app folder with node_modules linking tfjs-normalization and @tensorflow; returns its path. */
export function makeApp(): string {
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-normalization-app-'));
  fs.mkdirSync(path.join(app, 'node_modules'));
  fs.symlinkSync(ROOT, path.join(app, 'node_modules', 'tfjs-normalization'), 'dir');
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@tensorflow'), path.join(app, 'node_modules', '@tensorflow'), 'dir');
  fs.writeFileSync(path.join(app, 'package.json'), '{"name": "app", "private": true}\n');
  return app;
}

export async function bundleWithEsbuild(app: string, source: string): Promise<Bundle> {
  const result = await esbuild.build({
    stdin: {contents: source, resolveDir: app, loader: 'js'},
    bundle: true, minify: true, format: 'iife', platform: 'browser', write: false, metafile: true,
    absWorkingDir: app, logLevel: 'silent',
  });
  return {
    code: result.outputFiles[0].text,
    // Paths are relative to the app folder; "(disabled):" marks modules a "browser" field maps to false.
    inputs: Object.keys(result.metafile.inputs)
        .filter((input) => !input.startsWith('(disabled):') && input !== '<stdin>')
        .map((input) => fs.realpathSync(path.resolve(app, input))),
  };
}

export function bundleWithWebpack(app: string, source: string): Promise<Bundle> {
  const entry = path.join(app, 'entry.js');
  fs.writeFileSync(entry, source);
  const outDir = path.join(app, 'webpack-out');
  return new Promise((resolve, reject) => {
    webpack({
      mode: 'production', target: 'web', context: app, entry, devtool: false,
      output: {path: outDir, filename: 'bundle.js'}, performance: {hints: false},
      // webpack's production defaults: its tree shaking, then terser drops the unused exports.
    }, (error, stats) => {
      if (error != null || stats == null) return reject(error ?? new Error('webpack returned no stats'));
      const info = stats.toJson({all: false, errors: true, modules: true, nestedModules: true});
      if (stats.hasErrors()) return reject(new Error(info.errors!.map((e) => e.message).join('\n')));
      const inputs = new Set<string>();
      const visit = (modules: webpack.StatsModule[] | undefined) => modules?.forEach((m) => {
        if (m.nameForCondition != null && path.isAbsolute(m.nameForCondition)) {
          inputs.add(fs.realpathSync(m.nameForCondition));
        }
        visit(m.modules);
      });
      visit(info.modules);
      resolve({code: fs.readFileSync(path.join(outDir, 'bundle.js'), 'utf8'), inputs: [...inputs]});
    });
  });
}
