/**
 * `file://` in Node with only the main entry imported.
 *
 * tfjs routes a URL that no registered router claims to an HTTP fetch, so
 * `tf.loadLayersModel('file://...')` in Node without tfjs-node fails with
 * "TypeError: fetch failed", and `model.save('file://...')` with "Cannot find
 * any save handlers". In Node (tfjs's IS_NODE flag), the main entry registers
 * a load and a save router that claim `file://` only while no other router
 * does, and whose handler fails with the entry point to import instead.
 * `tfjs-normalization/node` turns this off when it registers its real routers
 * (src/io/file_system.ts); a tfjs-node router imported later wins on its own,
 * since this router yields to any other. In browsers nothing is registered.
 * Browser-safe: no `fs` import.
 */
import * as tf from '@tensorflow/tfjs-core';

type IORouter = Parameters<typeof tf.io.registerLoadRouter>[0];

const SCHEME = 'file://';
let active = true;
let routing = false;

/** The message of the handler: names the URL, the operation and the entry points that handle `file://`. */
export function fileUrlHint(url: string, operation: 'load' | 'save'): string {
  return `Cannot ${operation} ${url}: no file:// handler is registered in this Node process. Import ` +
      '\'tfjs-normalization/node\' (it registers file:// for tf.loadLayersModel and model.save, and exports ' +
      'fileSystem(dir)), or @tensorflow/tfjs-node, before loading or saving.';
}

/** Called by `registerFileSystemRouters` once the real `file://` routers are in place. */
export function disableFileUrlHint(): void {
  active = false;
}

function hintRouter(url: string | string[], claimedByOthers: (u: string) => boolean,
    operation: 'load' | 'save'): tf.io.IOHandler | null {
  if (!active || routing) return null;
  const u = Array.isArray(url) ? (url.length === 1 ? url[0] : null) : url;
  if (typeof u !== 'string' || !u.startsWith(SCHEME)) return null;
  routing = true;
  try {
    if (claimedByOthers(u)) return null;
  } finally {
    routing = false;
  }
  const fail = async (): Promise<never> => {
    throw new Error(fileUrlHint(u, operation));
  };
  return operation === 'load' ? {load: fail} : {save: fail};
}

if (tf.env().getBool('IS_NODE')) {
  // tfjs's IORouter type omits the null every router returns for URLs it does not handle.
  tf.io.registerLoadRouter(((url, options) =>
    hintRouter(url, (u) => tf.io.getLoadHandlers(u, options).length > 0, 'load')) as IORouter);
  tf.io.registerSaveRouter(((url) =>
    hintRouter(url, (u) => tf.io.getSaveHandlers(u).length > 0, 'save')) as IORouter);
}
