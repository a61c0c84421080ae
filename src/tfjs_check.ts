/**
 * Checks, when the package is imported and before any layer registers, that
 * the tfjs it resolved is the one the app uses and is recent enough.
 *
 * tfjs-core keeps one engine per process or page (`globalThis._tfengine`), made
 * by the first copy of tfjs-core that loads, together with that copy's
 * `Environment`. A second copy (npm nests one under this package when the app's
 * tfjs is outside the peer range; a bundler can pull in both tfjs's ES and Node
 * builds) reuses that engine but keeps its own serialization registry and
 * classes, so the layers would register where the app's `tf.loadLayersModel`
 * never looks and `fit` crashes deep in a kernel. `tf.env()` of a second copy
 * is an instance of the first copy's `Environment` class, not of its own: that
 * is the test. It sees copies loaded before this package (the usual order:
 * `@tensorflow/tfjs` first); a copy loaded after it is not visible here.
 *
 * Importing this module runs the check; src/index.ts imports it first.
 */
// Only tfjs-core is imported here: tfjs-layers is found with a guarded require (tfjsLayersVersion), so that
// a tfjs-layers npm nested out of this package's reach fails with this module's error, not a bare require.
import * as tf from '@tensorflow/tfjs-core';

/**
 * The tfjs versions this package works with; package.json's peerDependencies say
 * the same (test/packaging/tfjs_check.test.ts). 4.6.0 is the floor: older
 * tfjs-core has no `tf.io.CompositeArrayBuffer`, which the `file://` handler uses.
 */
export const SUPPORTED_TFJS = '>=4.6.0 <5.0.0';
const FLOOR = [4, 6];

/** Thrown at import when tfjs is loaded twice or is older than SUPPORTED_TFJS. */
export class TfjsVersionError extends Error {
  override name = 'TfjsVersionError';
}

const FIX = 'Run `npm ls @tensorflow/tfjs-core @tensorflow/tfjs-layers`: every entry should be one version, ' +
    `in ${SUPPORTED_TFJS}. Install @tensorflow/tfjs-core and @tensorflow/tfjs-layers in the app at the version ` +
    'its @tensorflow/tfjs uses, then `npm dedupe`; with a bundler, make @tensorflow/tfjs-core resolve to a ' +
    'single folder.';

/**
 * Throws TfjsVersionError when `version` (of `pkg`) is below the floor.
 * @param pkg The package name, for the message.
 * @param version Its `major.minor.patch` version.
 */
export function checkTfjsVersion(pkg: string, version: string): void {
  const [major, minor] = version.split('.').map(Number);
  if (!(major > FLOOR[0] || (major === FLOOR[0] && minor >= FLOOR[1]))) {
    throw new TfjsVersionError(`tfjs-normalization: ${pkg} ${version} is too old; this package needs ` +
        `${SUPPORTED_TFJS}. Upgrade @tensorflow/tfjs (or @tensorflow/tfjs-core and @tensorflow/tfjs-layers) in ` +
        `the app to one version in that range, e.g. \`npm install @tensorflow/tfjs@4\`, then check ` +
        '`npm ls @tensorflow/tfjs-core @tensorflow/tfjs-layers` shows that one version.');
  }
}

/** A loaded copy of tfjs-core's Node build: its folder and version. */
interface CoreCopy {
  dir: string;
  version: string | null;
}

/**
 * Each loaded copy of tfjs-core's Node build, from Node's module cache; empty
 * outside Node's CommonJS loader (browsers, bundles).
 */
function loadedTfjsCoreCopies(): CoreCopy[] {
  if (typeof require === 'undefined' || require.cache == null) return [];
  return Object.keys(require.cache)
      .map((file) => file.match(/^(.*[\\/]@tensorflow[\\/]tfjs-core)[\\/]dist[\\/]tf-core\.node\.js$/)?.[1])
      .filter((dir): dir is string => dir != null)
      .map((dir) => {
        try {
          return {dir, version: require(`${dir}/package.json`).version as string};
        } catch {
          return {dir, version: null};
        }
      });
}

/**
 * tfjs-layers' version as Node's `require` resolves it from this package, or
 * null outside Node's CommonJS loader (a bundler resolves it at build time).
 * @throws TfjsVersionError when Node cannot find it from here: npm nests
 *   tfjs-layers under @tensorflow/tfjs when the app also pins another
 *   tfjs-core, and this package then sees a tfjs-core but no tfjs-layers.
 */
function tfjsLayersVersion(): string | null {
  if (typeof require !== 'function' || typeof require.resolve !== 'function') return null;
  try {
    // A computed name: a bundler must not try to bundle tfjs-layers' package.json.
    const layers = '@tensorflow/tfjs-layers';
    return require(`${layers}/package.json`).version as string;
  } catch {
    throw new TfjsVersionError('tfjs-normalization: @tensorflow/tfjs-layers cannot be found from this package ' +
        `(it found @tensorflow/tfjs-core ${tf.version_core}); npm nests it under @tensorflow/tfjs when the app ` +
        `also installs another @tensorflow/tfjs-core version. ${FIX}`);
  }
}

/** Throws TfjsVersionError when another copy of tfjs-core loaded first, tfjs-layers is out of reach, or tfjs is too old. */
export function checkTfjs(): void {
  if (!(tf.env() instanceof tf.Environment)) {
    const copies = loadedTfjsCoreCopies();
    const listed = copies.map(({dir, version}) => `${dir} (${version ?? 'version unknown'})`).join(', ');
    // The other copy's version, when Node's cache tells it: the app's tfjs, to align this package with.
    const other = copies.find(({version}) => version != null && version !== tf.version_core)?.version;
    const align = other == null ? '' : ' Here: `npm install @tensorflow/tfjs-core@' + other +
        ' @tensorflow/tfjs-layers@' + other + '` (the version of the other copy) in the app.';
    throw new TfjsVersionError('tfjs-normalization: two copies of @tensorflow/tfjs-core are loaded ' +
        `(this package resolved ${tf.version_core}; another copy loaded first` +
        `${copies.length > 1 ? `; loaded: ${listed}` : ''}). Its layers would register with a copy ` +
        `of tfjs the app does not use. ${FIX}${align}`);
  }
  checkTfjsVersion('@tensorflow/tfjs-core', tf.version_core);
  const layersVersion = tfjsLayersVersion();
  if (layersVersion != null) checkTfjsVersion('@tensorflow/tfjs-layers', layersVersion);
}

checkTfjs();
