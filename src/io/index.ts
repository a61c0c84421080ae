/**
 * The Node entry, `tfjs-normalization/node`: everything the main entry exports,
 * plus the file-system IOHandler. Importing it registers the `file://` save and
 * load routers (unless tfjs-node already provides them). Kept apart from the
 * main entry so browser bundles never see `fs`.
 */
import {registerFileSystemRouters} from './file_system';

export * from '../index';
export {
  fileSystem, registerFileSystemRouters, FileOps, FileSystemOptions, nodeFileOps, FILE_SCHEME, MODEL_JSON, REQUIRES_KEY,
  WEIGHTS_BIN,
} from './file_system';

registerFileSystemRouters();
