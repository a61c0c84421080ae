// Builds every file the package ships into dist/ (`npm run build`):
//  - dist/cjs/: CommonJS and .d.ts from tsc, one file per source file, source
//    maps with the sources inlined. Node's `require` and the types use it.
//  - dist/wrap/{index,node}.mjs: Node's `import`. Thin ES modules that re-export
//    dist/cjs, so an app mixing `import` and `require` still loads the layers
//    once (one class per layer, one registration).
//  - dist/esm/{index,node}.js: ES modules for bundlers (conditions `browser`,
//    `import`), built by esbuild with code splitting so both entries share one
//    copy of the layers; tfjs stays a bare import the app's bundler resolves
//    (to tfjs's ES build, never its Node build).
//  - dist/browser/tfjs-normalization.min.js: IIFE exposing the global `tfnorm`;
//    '@tensorflow/tfjs-core' and '@tensorflow/tfjs-layers' resolve to the page's
//    global `tf` (the @tensorflow/tfjs script tag), so the layers register with
//    the copy of tfjs the page uses.
// Any other @tensorflow import fails the build instead of pulling a second copy
// of tfjs in, and the build fails if tfjs code ends up inside a file.
// `node scripts/build.mjs --browser` builds only the IIFE (`npm run build:browser`).
import * as esbuild from 'esbuild';
import {execFileSync} from 'node:child_process';
import {mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PEERS = ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers'];
const IIFE_FILE = join(root, 'dist/browser/tfjs-normalization.min.js');
const ESM_DIR = join(root, 'dist/esm');
const WRAP_DIR = join(root, 'dist/wrap');
// The two public entries: name -> [source, tsc output under dist/cjs].
const ENTRIES = {index: ['src/index.ts', 'index'], node: ['src/io/index.ts', 'io/index']};
// Node built-ins the `/node` entry imports; they stay imports in dist/esm/node.js.
const NODE_BUILTINS = ['fs', 'path'];

// Strings that occur only inside tfjs's own code (engine, layers model, backends):
// finding one in our output means tfjs was bundled.
const TFJS_MARKERS = [
  'Cannot initialize backend',
  'first layer in a Sequential model must get an',
  'MathBackendCPU',
  'MathBackendWebGL',
];

const {version, dependencies = {}} = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
// The package's own runtime dependencies (not tfjs): bundled into the IIFE, left to the app's bundler in dist/esm.
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
  bundle: true,
  target: 'es2020',
  banner: {js: banner},
  sourcemap: true,
  metafile: true,
  logLevel: 'warning',
  tsconfig: join(root, 'tsconfig.build.json'),
};

/** Throws if a build pulled in a dependency or if a file holds tfjs code. */
function checkNoTfjs(result) {
  const inputs = Object.keys(result.metafile.inputs).filter((p) => p.includes('node_modules') &&
      !RUNTIME_DEPENDENCIES.some((dependency) => p.includes(`node_modules/${dependency}/`)));
  if (inputs.length > 0) throw new Error(`build pulled in dependencies: ${inputs.join(', ')}`);
  for (const file of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js'))) {
    const text = readFileSync(join(root, file), 'utf8');
    const found = TFJS_MARKERS.filter((m) => text.includes(m));
    if (found.length > 0) throw new Error(`${file} contains tfjs code (${found.join(', ')})`);
  }
}

/** The IIFE for script tags; returns its size in bytes. */
async function buildIife() {
  const result = await esbuild.build({
    ...common, entryPoints: [join(root, 'src/index.ts')], platform: 'browser', target: 'es2017', format: 'iife',
    globalName: 'tfnorm', minify: true, outfile: IIFE_FILE, plugins: [tfjsPeer('iife')],
  });
  checkNoTfjs(result);
  return statSync(IIFE_FILE).size;
}

/** dist/esm: both entries, sharing chunks; returns the tfjs imports left bare. */
async function buildEsm() {
  const result = await esbuild.build({
    ...common,
    entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, [source]]) => [name, join(root, source)])),
    platform: 'neutral', format: 'esm', splitting: true, outdir: ESM_DIR, chunkNames: 'chunks/[name]-[hash]',
    external: [...NODE_BUILTINS, ...RUNTIME_DEPENDENCIES], plugins: [tfjsPeer('esm')],
  });
  checkNoTfjs(result);
  // Files under dist/esm are ES modules for Node, TypeScript and bundlers alike.
  writeFileSync(join(ESM_DIR, 'package.json'), '{"type": "module"}\n');
  for (const [name, [, cjs]] of Object.entries(ENTRIES)) {
    writeFileSync(join(ESM_DIR, `${name}.d.ts`), `export * from '../cjs/${cjs}.js';\n`);
  }
  const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external));
  return [...new Set(imports.map((i) => i.path))];
}

/** dist/wrap: ES modules re-exporting each CommonJS entry by name, for Node's `import`. */
function writeNodeWrappers() {
  mkdirSync(WRAP_DIR, {recursive: true});
  const require = createRequire(import.meta.url);
  for (const [name, [, cjs]] of Object.entries(ENTRIES)) {
    const names = Object.keys(require(join(root, 'dist/cjs', `${cjs}.js`))).filter((n) => n !== '__esModule');
    writeFileSync(join(WRAP_DIR, `${name}.mjs`), `${banner}
// Node's \`import\`: re-exports dist/cjs/${cjs}.js so import and require share one copy.
import cjs from '../cjs/${cjs}.js';

export const {${names.join(', ')}} = cjs;
`);
    writeFileSync(join(WRAP_DIR, `${name}.d.mts`), `export * from '../cjs/${cjs}.js';\n`);
  }
}

const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
if (!process.argv.includes('--browser')) {
  rmSync(join(root, 'dist'), {recursive: true, force: true});
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {cwd: root, stdio: 'inherit'});
  const imports = await buildEsm();
  writeNodeWrappers();
  console.log(`dist/cjs (tsc), dist/wrap (Node import), dist/esm (bundlers; imports: ${imports.join(', ')})`);
}
console.log(`dist/browser/tfjs-normalization.min.js ${kib(await buildIife())} (global tfnorm, tfjs from global tf)`);
