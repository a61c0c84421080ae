/**
 * A Node file-system IOHandler in plain JavaScript (no native code), for
 * saving and loading models where `@tensorflow/tfjs-node` is not installed.
 *
 * Layout, as tfjs-node writes it, so files move between the two:
 *   <dir>/model.json   {modelTopology, format, generatedBy, convertedBy,
 *                       weightsManifest: [{paths: ['weights.bin'], weights}],
 *                       trainingConfig?, signature?, userDefinedMetadata?, modelInitializer?,
 *                       tfjsNormalization?: {layerClasses, howToLoad}}
 * (`tfjsNormalization`, REQUIRES_KEY, names the classes that need this package
 * to load; tfjs ignores it.)
 *   <dir>/weights.bin  all weights, little-endian, in manifest order
 *
 * Saving is atomic per file (write a temporary file, flush, rename) and
 * model.json is renamed into place last, after any old model.json has been
 * removed: a crash at any point leaves either the old model, the new model, or
 * no model.json at all, never a model.json pointing at weights of another save.
 *
 * Loading accepts the directory or the model.json path, reads only files
 * inside the model's directory, and runs `validateModelArtifacts` (sizes,
 * dtypes and this package's layers' weights) before tfjs builds anything.
 *
 * Node-only: this file imports `fs`, so it is reachable only from the
 * `tfjs-normalization/node` entry (src/io/index.ts), never from the browser entry.
 */
import * as tf from '@tensorflow/tfjs-core';
import {promises as fsp} from 'fs';
import * as nodePath from 'path';
import {disableFileUrlHint} from './file_url_hint';
import {normalizationClassNames, validateModelArtifacts} from './validate';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const FILE_SCHEME = 'file://';
/**
 * The model.json key under which `save` records the classes that need this
 * package, for readers of the file: tfjs ignores keys it does not know (it
 * reads modelTopology, weightsManifest, format, generatedBy, convertedBy,
 * trainingConfig, signature, userDefinedMetadata, modelInitializer), and
 * userDefinedMetadata belongs to the user.
 */
export const REQUIRES_KEY = 'tfjsNormalization';

/**
 * The file operations the handler performs. Tests replace some of them to
 * inject failures between the steps of a save.
 */
export interface FileOps {
  mkdir(path: string): Promise<unknown>;
  /** Writes the whole file and flushes it to disk before resolving. */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  readFile(path: string): Promise<Uint8Array>;
  stat(path: string): Promise<{isDirectory(): boolean}>;
  realpath(path: string): Promise<string>;
}

export const nodeFileOps: FileOps = {
  mkdir: (path) => fsp.mkdir(path, {recursive: true}),
  writeFile: async (path, data) => {
    const file = await fsp.open(path, 'w');
    try {
      await file.writeFile(data);
      await file.sync();
    } finally {
      await file.close();
    }
  },
  rename: (from, to) => fsp.rename(from, to),
  unlink: (path) => fsp.unlink(path),
  readFile: (path) => fsp.readFile(path),
  stat: (path) => fsp.stat(path),
  realpath: (path) => fsp.realpath(path),
};

export interface FileSystemOptions {
  /** Replaces some file operations (for tests); the rest are Node's. */
  ops?: Partial<FileOps>;
}

/**
 * An IOHandler for `model.save(fileSystem(dir))` and
 * `tf.loadLayersModel(fileSystem(dir))`. `path` is the model directory; load
 * also accepts the path of a model.json file.
 */
export function fileSystem(path: string, options: FileSystemOptions = {}): tf.io.IOHandler {
  if (typeof path !== 'string' || path.length === 0) {
    throw new Error(`fileSystem: path must be a non-empty string; received ${JSON.stringify(path)}.`);
  }
  const ops: FileOps = {...nodeFileOps, ...options.ops};
  return {
    save: (artifacts) => save(ops, path, artifacts),
    load: () => load(ops, path),
  };
}

async function save(ops: FileOps, dir: string, artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
  if (artifacts.modelTopology instanceof ArrayBuffer) {
    throw new Error('fileSystem: saving a binary (GraphDef) model topology is not supported; save a LayersModel.');
  }
  try {
    await ops.mkdir(dir);
  } catch (e) {
    throw new Error(`fileSystem: cannot create the model directory ${dir}: ${(e as Error).message}`);
  }
  const modelJSON: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology as {},
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy,
    weightsManifest: [{paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? []}],
  };
  for (const key of ['trainingConfig', 'signature', 'userDefinedMetadata', 'modelInitializer'] as const) {
    if (artifacts[key] != null) (modelJSON as unknown as Record<string, unknown>)[key] = artifacts[key];
  }
  const classes = normalizationClassNames(artifacts.modelTopology);
  if (classes.length > 0) {
    (modelJSON as unknown as Record<string, unknown>)[REQUIRES_KEY] = {
      layerClasses: classes,
      howToLoad: 'These layer classes are registered by importing tfjs-normalization (in Node, ' +
          '\'tfjs-normalization/node\' also handles file://) before tf.loadLayersModel; without it tfjs fails ' +
          `with "Unknown layer: ${classes[0]}".`,
    };
  }
  const weights = new Uint8Array(
      artifacts.weightData == null ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData));

  const jsonPath = nodePath.join(dir, MODEL_JSON);
  const weightsPath = nodePath.join(dir, WEIGHTS_BIN);
  const tag = `.tmp-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const temps = [weightsPath + tag, jsonPath + tag];
  try {
    await ops.writeFile(temps[0], weights);
    await ops.writeFile(temps[1], JSON.stringify(modelJSON));
    // From here until the last rename there is no model.json, so no reader
    // can pair an old model.json with the new weights.
    await removeIfPresent(ops, jsonPath);
    await ops.rename(temps[0], weightsPath);
    await ops.rename(temps[1], jsonPath);
  } catch (e) {
    await Promise.all(temps.map((t) => removeIfPresent(ops, t).catch(() => undefined)));
    throw new Error(`fileSystem: saving the model to ${dir} failed (no partial model was left behind ` +
        `${MODEL_JSON}): ${(e as Error).message}`);
  }
  return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts)};
}

async function removeIfPresent(ops: FileOps, path: string): Promise<void> {
  try {
    await ops.unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

async function load(ops: FileOps, path: string): Promise<tf.io.ModelArtifacts> {
  let jsonPath = path;
  try {
    if ((await ops.stat(path)).isDirectory()) jsonPath = nodePath.join(path, MODEL_JSON);
  } catch (e) {
    throw new Error(`fileSystem: cannot load a model from ${path}: ${describeIoError(e)}`);
  }
  let text: string;
  try {
    text = Buffer.from(await ops.readFile(jsonPath)).toString('utf8');
  } catch (e) {
    throw new Error(`fileSystem: cannot read ${jsonPath}: ${describeIoError(e)}`);
  }
  let modelJSON: tf.io.ModelJSON;
  try {
    modelJSON = JSON.parse(text);
  } catch (e) {
    throw new Error(`fileSystem: ${jsonPath} is not valid JSON (${(e as Error).message}).`);
  }
  if (modelJSON == null || typeof modelJSON !== 'object' || Array.isArray(modelJSON) ||
      (modelJSON.modelTopology == null && modelJSON.weightsManifest == null)) {
    throw new Error(`fileSystem: ${jsonPath} is not a model.json: it has neither modelTopology nor weightsManifest.`);
  }
  if (modelJSON.weightsManifest != null && !Array.isArray(modelJSON.weightsManifest)) {
    throw new Error(`fileSystem: ${jsonPath}: weightsManifest must be an array of {paths, weights} groups.`);
  }
  const dir = nodePath.dirname(jsonPath);
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJSON,
      (manifest) => readWeights(ops, dir, jsonPath, manifest));
  try {
    validateModelArtifacts(artifacts);
  } catch (e) {
    throw new Error(`fileSystem: ${jsonPath}: ${(e as Error).message}`);
  }
  return artifacts;
}

async function readWeights(ops: FileOps, dir: string, jsonPath: string, manifest: tf.io.WeightsManifestConfig):
    Promise<[tf.io.WeightsManifestEntry[], ArrayBuffer]> {
  const realDir = await ops.realpath(dir);
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const group of manifest) {
    if (group == null || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new Error(`fileSystem: ${jsonPath}: each weightsManifest group needs 'paths' and 'weights' arrays.`);
    }
    for (const relative of group.paths) {
      const file = await resolveInside(ops, dir, realDir, relative, jsonPath);
      let data: Uint8Array;
      try {
        data = await ops.readFile(file);
      } catch (e) {
        throw new Error(`fileSystem: cannot read weights file ${file} listed in ${jsonPath}: ${describeIoError(e)}`);
      }
      buffers.push(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
    }
    specs.push(...group.weights);
  }
  return [specs, tf.io.concatenateArrayBuffers(buffers)];
}

/** The file a manifest path names, refusing anything that leaves the model directory. */
async function resolveInside(ops: FileOps, dir: string, realDir: string, relative: unknown, jsonPath: string):
    Promise<string> {
  const refuse = (why: string) => new Error(`fileSystem: ${jsonPath} lists the weights path ` +
      `${JSON.stringify(relative)}, which ${why}; weights must be files inside ${dir}.`);
  if (typeof relative !== 'string' || relative.length === 0 || relative.includes('\0')) {
    throw refuse('is not a file name');
  }
  if (nodePath.isAbsolute(relative) || /^[a-z][a-z0-9+.-]*:/i.test(relative)) {
    throw refuse('is absolute');
  }
  const file = nodePath.resolve(dir, relative);
  if (!isInside(nodePath.resolve(dir), file)) throw refuse('points outside the model directory');
  let real: string;
  try {
    real = await ops.realpath(file);
  } catch (e) {
    throw new Error(`fileSystem: cannot read weights file ${file} listed in ${jsonPath}: ${describeIoError(e)}`);
  }
  // A symbolic link inside the directory may still lead out of it.
  if (!isInside(realDir, real)) throw refuse('resolves (through a link) outside the model directory');
  return file;
}

function isInside(dir: string, file: string): boolean {
  const rel = nodePath.relative(dir, file);
  return rel.length > 0 && !rel.startsWith('..') && !nodePath.isAbsolute(rel);
}

function describeIoError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return (e as Error).message;
}

let routing = false;

/** Resolves `file://<path>` to a fileSystem handler unless another router also claims the URL. */
function fileRouter(url: string | string[], claimedByOthers: (u: string) => boolean): tf.io.IOHandler | null {
  if (routing) return null;
  const u = Array.isArray(url) ? (url.length === 1 ? url[0] : null) : url;
  if (typeof u !== 'string' || !u.startsWith(FILE_SCHEME)) return null;
  // tfjs-node registers its own file:// router; defer to it (or any other) even
  // when it was imported after this package, so a URL never gets two handlers.
  routing = true;
  try {
    if (claimedByOthers(u)) return null;
  } finally {
    routing = false;
  }
  return fileSystem(u.slice(FILE_SCHEME.length));
}

type IORouter = Parameters<typeof tf.io.registerSaveRouter>[0];

let registered = false;

/**
 * Registers `file://` save and load routers that return `fileSystem(path)`,
 * unless another router (tfjs-node's) already handles `file://`. Returns
 * whether this package's routers are registered. Called when
 * `tfjs-normalization/node` is imported.
 */
export function registerFileSystemRouters(): boolean {
  if (registered) return true;
  // The main entry's file:// hint (src/io/file_url_hint.ts) gives way to real routers.
  disableFileUrlHint();
  const probe = FILE_SCHEME + 'probe';
  if (tf.io.getSaveHandlers(probe).length > 0 || tf.io.getLoadHandlers(probe).length > 0) return false;
  // tfjs's IORouter type omits the null every router returns for URLs it does not handle.
  tf.io.registerSaveRouter(((url) => fileRouter(url, (u) => tf.io.getSaveHandlers(u).length > 0)) as IORouter);
  tf.io.registerLoadRouter(((url, options) =>
    fileRouter(url, (u) => tf.io.getLoadHandlers(u, options).length > 0)) as IORouter);
  registered = true;
  return true;
}
