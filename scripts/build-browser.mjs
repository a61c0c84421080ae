// Browser builds of tfjs-normalization, with tfjs as a peer that is never bundled:
//  - dist/browser/tfjs-normalization.min.js: IIFE exposing the global `tfnorm`;
//    '@tensorflow/tfjs-core' and '@tensorflow/tfjs-layers' resolve to the page's
//    global `tf` (the @tensorflow/tfjs script tag), so the layers register with
//    the copy of tfjs the page uses.
//  - dist/browser/tfjs-normalization.esm.js: ES module for bundlers; the tfjs
//    imports stay bare and the app's bundler resolves them to its own copy.
// Any other @tensorflow import, or a Node built-in, fails the build instead of
// pulling a second copy of tfjs or Node-only code into the browser files.
import * as esbuild from 'esbuild';
import {readFileSync, statSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist/browser');
const PEERS = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers'];
const IIFE_FILE = join(outDir, 'tfjs-normalization.min.js');
const ESM_FILE = join(outDir, 'tfjs-normalization.esm.js');

// Strings that occur only inside tfjs's own code (engine, layers model, backends):
// finding one in our output means tfjs was bundled.
const TFJS_MARKERS = [
  'Cannot initialize backend',
  'first layer in a Sequential model must get an',
  'MathBackendCPU',
  'MathBackendWebGL',
];

const {version, dependencies = {}} = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// The package's own runtime dependencies (not tfjs): bundled into the IIFE, left to the app's bundler in the ESM file.
const RUNTIME_DEPENDENCIES = Object.keys(dependencies);
const banner = `/* tfjs-normalization ${version} (Apache-2.0). Needs @tensorflow/tfjs 4.x loaded first. */`;

/** Peer imports: bare (ESM) or the page's global `tf` (IIFE); other @tensorflow paths are an error. */
function tfjsPeer(mode) {
  return {
    name: 'tfjs-peer',
    setup(build) {
      build.onResolve({filter: /^@tensorflow\//}, (args) => {
        if (!PEERS.includes(args.path)) {
          return {errors: [{text: `${args.path} (imported by ${args.importer}) would be bundled into the ` +
              `browser build; only ${PEERS.join(' and ')} are allowed, as peers resolved by the app.`}]};
        }
        return mode === 'esm' ? {path: args.path, external: true} : {path: args.path, namespace: 'tf-global'};
      });
      build.onLoad({filter: /.*/, namespace: 'tf-global'}, () => ({
        loader: 'js',
        contents: `if (typeof tf === 'undefined' || tf.layers == null) {
  throw new Error('tfjs-normalization: load @tensorflow/tfjs (global tf) before tfjs-normalization.min.js');
}
module.exports = tf;`,
      }));
    },
  };
}

const common = {
  entryPoints: [join(root, 'src/index.ts')],
  bundle: true,
  platform: 'browser',
  target: 'es2017',
  banner: {js: banner},
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
  tsconfig: join(root, 'tsconfig.build.json'),
};

/** Builds both files and checks that no tfjs code is inside; returns their sizes in bytes. */
async function buildBrowser() {
  const iife = await esbuild.build({
    ...common, format: 'iife', globalName: 'tfnorm', minify: true, outfile: IIFE_FILE, plugins: [tfjsPeer('iife')],
  });
  const esm = await esbuild.build({
    ...common, format: 'esm', outfile: ESM_FILE, plugins: [tfjsPeer('esm')], external: RUNTIME_DEPENDENCIES,
  });
  for (const result of [iife, esm]) {
    const inputs = Object.keys(result.metafile.inputs).filter((p) => p.includes('node_modules') &&
        !RUNTIME_DEPENDENCIES.some((dependency) => p.includes(`node_modules/${dependency}/`)));
    if (inputs.length > 0) throw new Error(`browser build pulled in dependencies: ${inputs.join(', ')}`);
  }
  for (const file of [IIFE_FILE, ESM_FILE]) {
    const text = readFileSync(file, 'utf8');
    const found = TFJS_MARKERS.filter((m) => text.includes(m));
    if (found.length > 0) throw new Error(`${file} contains tfjs code (${found.join(', ')})`);
  }
  const esmImports = Object.values(esm.metafile.outputs).flatMap((o) => o.imports.map((i) => i.path));
  return {
    iife: statSync(IIFE_FILE).size,
    esm: statSync(ESM_FILE).size,
    esmImports: [...new Set(esmImports)],
  };
}

const sizes = await buildBrowser();
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
console.log(`dist/browser/tfjs-normalization.min.js ${kib(sizes.iife)} (global tfnorm, tfjs from global tf)`);
console.log(`dist/browser/tfjs-normalization.esm.js ${kib(sizes.esm)} (imports: ${sizes.esmImports.join(', ')})`);
