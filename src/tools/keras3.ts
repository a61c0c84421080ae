/**
 * Keras 3 layers-model files (tensorflowjs_converter 4.2x run on Keras 3.x)
 * rewritten into the layers-model format tfjs 4.22 reads (tf.keras 2.x's),
 * as a pure JSON-to-JSON step on the artifacts: `kerasArtifacts(artifacts)`
 * returns new artifacts and never patches a tfjs class. `fromKeras(handler)`
 * applies it to any IOHandler's `load()` (and checks the result with
 * `validateModelArtifacts`); `loadKerasModel(urlOrHandler)` is
 * `tf.loadLayersModel(fromKeras(...))`.
 *
 * What the rewrite does (Keras 3 writes → tfjs reads):
 *  - functional `inbound_nodes` `[{args, kwargs}]` whose tensors are
 *    `{class_name: "__keras_tensor__", config: {keras_history: [layer, node,
 *    tensor]}}` → `[[[layer, node, tensor, kwargs], ...]]`; one positional
 *    tensor or one list of tensors per call (Add, Concatenate, a model with
 *    several inputs); non-tensor kwargs are kept (tfjs ignores them, as it
 *    ignores them in tf.keras 2.x files);
 *  - a reference to a nested Sequential's output: node index + 1 (a tfjs
 *    Sequential, like every tfjs and Keras Functional model, owns node 0; a
 *    Keras 3 Sequential does not);
 *  - `input_layers` / `output_layers` in the flat single-tensor form
 *    `[name, node, tensor]` → the nested list;
 *  - InputLayer `batch_shape` → `batch_input_shape`; `optional: false`,
 *    `ragged: false` dropped;
 *  - `dtype` as a DTypePolicy object on any layer or model → its name;
 *    `mixed_float16` and `mixed_bfloat16` keep float32 variables and are
 *    loaded as float32 (tfjs computes in float32 only);
 *  - serialized objects `{module, class_name, config, registered_name}` in
 *    `*_initializer`, `*_regularizer`, `*_constraint` → `{class_name,
 *    config}`, with Keras 3's names mapped to tfjs's: `L1` and `L2` →
 *    `L1L2`, `LecunNormal` / `LecunUniform` → `LeCunNormal` / `LeCunUniform`;
 *  - `module`, `registered_name`, `build_config`, `compile_config` dropped;
 *    a Sequential without an InputLayer gets its first layer's
 *    `batch_input_shape` from `build_config.input_shape`;
 *  - weight names: Keras 3 writes variable paths (`sequential/conv2d/kernel`),
 *    tfjs matches `layer/weight`: the leading names of enclosing models are
 *    removed, and DepthwiseConv2D's `kernel` (Keras 3's name) becomes
 *    `depthwise_kernel` (tfjs's and tf.keras 2.x's).
 * What cannot be honoured throws a NormalizationConfigError naming the layer,
 * the key and why: a dtype policy other than float32 / int32 / bool / string /
 * mixed_*, OrthogonalRegularizer or another object tfjs has no class for,
 * VarianceScaling with `untruncated_normal`, Conv `groups` > 1, ReLU
 * `negative_slope` or `threshold` != 0, pooling `keepdims: true`, a sparse or
 * optional InputLayer, a call with several positional tensors or a tensor in
 * kwargs, two weights mapping to one name.
 *
 * Files that are not Keras 3 (`keras_version` 2.x, or saved by tfjs) pass
 * through unchanged, except tf.keras 2.x's ghost-batch BatchNormalization
 * (`virtual_batch_size`), whose shifted axis and [1, ..., C] weight shapes
 * are rewritten by `kerasGhostArtifacts` (./keras.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {isKeras3Topology, validateModelArtifacts} from '../io/validate';
import {registeredClass} from '../tfjs_internals';
import {configError} from '../layers/config';
import {kerasGhostArtifacts} from './keras';

type Json = Record<string, unknown>;

/** Class names of models (containers), whose configs hold layers. */
const MODEL_CLASSES = ['Sequential', 'Functional', 'Model'];
/** Config keys that hold a whole layer config (wrappers, RNN cells). */
const WRAPPED = ['layer', 'backward_layer', 'cell'];
/** Keras 3 object names → tfjs's, where they differ. */
const RENAMED: Record<string, string> = {
  LecunNormal: 'LeCunNormal', LecunUniform: 'LeCunUniform', IdentityInitializer: 'Identity',
  L1: 'L1L2', L2: 'L1L2',
};
/** Dtype policy names tfjs builds layers for; mixed policies keep float32 variables. */
const DTYPES: Record<string, string> = {
  float32: 'float32', int32: 'int32', bool: 'bool', string: 'string',
  mixed_float16: 'float32', mixed_bfloat16: 'float32',
};

const isObject = (value: unknown): value is Json =>
  value != null && typeof value === 'object' && !Array.isArray(value);

/**
 * Keras 3 artifacts rewritten for tfjs (see the module comment); other
 * artifacts are returned unchanged. Pure: the input is not modified.
 *
 * @throws NormalizationConfigError naming the layer, the key and why, for
 *   what tfjs cannot honour.
 */
export function kerasArtifacts(artifacts: tf.io.ModelArtifacts): tf.io.ModelArtifacts {
  const topology = artifacts.modelTopology;
  // tf.keras 2.x files need only the ghost-batch rewrite; Keras 3 has no virtual batches.
  if (!isKeras3Topology(topology)) return kerasGhostArtifacts(artifacts);
  const source = topology as Json;
  const modelConfig = source.model_config;
  if (!isObject(modelConfig)) {
    throw configError('Keras 3 model', 'model_config', modelConfig, 'expected a {class_name, config} object');
  }
  const context: Context = {models: new Set(), depthwise: new Set()};
  const converted = convertLayer(modelConfig, context);
  const {model_config: _, ...rest} = source;
  return {
    ...artifacts,
    modelTopology: {...rest, model_config: converted},
    weightSpecs: artifacts.weightSpecs == null ? undefined : renameWeights(artifacts.weightSpecs, context),
  };
}

/** Wraps an IOHandler so that `load()` returns `kerasArtifacts(...)`, checked by `validateModelArtifacts`. */
export function fromKeras(handler: tf.io.IOHandler): tf.io.IOHandler {
  if (handler == null || typeof handler.load !== 'function') {
    throw new Error('fromKeras: expected an IOHandler with a load() method, such as tf.io.http(url) or ' +
        'tf.io.fromMemory(modelJson), or use loadKerasModel(url).');
  }
  return {
    load: async () => {
      const artifacts = kerasArtifacts(await handler.load!());
      validateModelArtifacts(artifacts);
      return artifacts;
    },
  };
}

/**
 * Loads a Keras 3 (or tf.keras 2.x) converted layers model from a URL tfjs
 * can route (`https://`, `indexeddb://`, and `file://` after importing
 * `tfjs-normalization/node`) or from an IOHandler.
 *
 * @throws Error when no IOHandler handles the URL (naming the entry point for
 *   `file://`), and the errors of `kerasArtifacts` and `tf.loadLayersModel`.
 */
export async function loadKerasModel(source: string | tf.io.IOHandler,
    options?: tf.io.LoadOptions): Promise<tfl.LayersModel> {
  if (typeof source !== 'string') return tfl.loadLayersModel(fromKeras(source), options);
  const handlers = tf.io.getLoadHandlers(source, options);
  if (handlers.length === 0) {
    throw new Error(`loadKerasModel: no IOHandler loads ${JSON.stringify(source)}` +
        (source.startsWith('file://') ? '; in Node, import \'tfjs-normalization/node\' (it registers file://) or ' +
            'pass fileSystem(dir) from it.' : '; pass an IOHandler instead.'));
  }
  return tfl.loadLayersModel(fromKeras(handlers[0]), options);
}

interface Context {
  /** Names of model layers at every depth (their names lead Keras 3 weight paths). */
  models: Set<string>;
  /** Names of DepthwiseConv2D layers. */
  depthwise: Set<string>;
}

/** One layer entry ({class_name, config, ...}) in tfjs's form; recurses into models. */
function convertLayer(entry: Json, context: Context, classOf?: Map<string, string>): Json {
  const className = entry.class_name;
  const config = isObject(entry.config) ? entry.config : {};
  const name = String(config.name ?? entry.name ?? '(unnamed)');
  const where = `${className} '${name}'`;
  const out: Json = {class_name: className, config: convertConfig(where, String(className), config, context)};
  if (typeof entry.name === 'string') out.name = entry.name;
  if (Array.isArray(entry.inbound_nodes)) {
    out.inbound_nodes = entry.inbound_nodes.map((node, i) => convertNode(where, node, i, classOf ?? new Map()));
  }
  if (className === 'DepthwiseConv2D') context.depthwise.add(name);
  if (MODEL_CLASSES.includes(String(className))) {
    context.models.add(name);
    const layers = (out.config as Json).layers;
    const buildShape = (isObject(entry.build_config) ? entry.build_config.input_shape : undefined) ??
        config.build_input_shape;
    // A first layer that is a model brings its own inputs.
    if (className === 'Sequential' && Array.isArray(layers) && layers.length > 0 &&
        !['InputLayer', ...MODEL_CLASSES].includes(String(layers[0].class_name)) && Array.isArray(buildShape)) {
      const first = layers[0].config as Json;
      if (first.batch_input_shape == null) first.batch_input_shape = buildShape;
    }
  }
  return out;
}

function convertConfig(where: string, className: string, config: Json, context: Context): Json {
  const out: Json = {};
  for (const [key, value] of Object.entries(config)) {
    if (key === 'dtype') out.dtype = convertDtype(where, value);
    else if (/_(initializer|regularizer|constraint)$/.test(key)) out[key] = convertObject(where, key, value);
    // The inner layer of a wrapper (TimeDistributed, Bidirectional) or an RNN's cell is a layer config too.
    else if (WRAPPED.includes(key) && isObject(value) && typeof value.class_name === 'string') {
      out[key] = convertLayer(value, context);
    } else out[key] = value;
  }
  if (MODEL_CLASSES.includes(className) && Array.isArray(config.layers)) {
    const classOf = new Map<string, string>();
    for (const layer of config.layers) {
      if (isObject(layer) && isObject(layer.config)) {
        classOf.set(String(layer.config.name ?? layer.name), String(layer.class_name));
      }
    }
    out.layers = config.layers.map((layer, i) => {
      if (!isObject(layer)) throw configError(where, `layers[${i}]`, layer, 'expected a layer object');
      return convertLayer(layer, context, classOf);
    });
    for (const key of ['input_layers', 'output_layers']) {
      if (config[key] != null) out[key] = convertEnds(where, key, config[key], classOf);
    }
    delete out.build_input_shape;
  }
  switch (className) {
    case 'InputLayer':
      return convertInputLayer(where, out);
    case 'Conv1D': case 'Conv2D': case 'Conv3D': case 'Conv1DTranspose': case 'Conv2DTranspose':
    case 'Conv3DTranspose':
      if (out.groups != null && out.groups !== 1) {
        throw configError(where, 'groups', out.groups, 'tfjs has no grouped convolution');
      }
      delete out.groups;
      break;
    case 'ReLU':
      for (const key of ['negative_slope', 'threshold']) {
        if (out[key] != null && out[key] !== 0) {
          throw configError(where, key, out[key], 'tfjs\'s ReLU has only max_value; this would change the output');
        }
        delete out[key];
      }
      break;
    case 'GlobalAveragePooling1D': case 'GlobalAveragePooling2D': case 'GlobalAveragePooling3D':
    case 'GlobalMaxPooling1D': case 'GlobalMaxPooling2D': case 'GlobalMaxPooling3D':
      if (out.keepdims === true) throw configError(where, 'keepdims', true, 'tfjs\'s global pooling drops the axes');
      delete out.keepdims;
      break;
  }
  return out;
}

function convertInputLayer(where: string, config: Json): Json {
  const {batch_shape: batchShape, optional, ragged, ...rest} = config;
  if (optional === true) throw configError(where, 'optional', optional, 'tfjs has no optional inputs');
  if (ragged === true) throw configError(where, 'ragged', ragged, 'tfjs has no ragged tensors');
  if (rest.sparse === true) throw configError(where, 'sparse', rest.sparse, 'tfjs has no sparse inputs');
  if (batchShape != null && rest.batch_input_shape == null) {
    if (!Array.isArray(batchShape)) throw configError(where, 'batch_shape', batchShape, 'expected a list');
    rest.batch_input_shape = batchShape;
  }
  return rest;
}

/** A DTypePolicy ({class_name: "DTypePolicy", config: {name}}) or a dtype name → the dtype tfjs builds with. */
function convertDtype(where: string, value: unknown): unknown {
  if (value == null) return value;
  const name = isObject(value) && isObject(value.config) ? value.config.name : value;
  if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPES, name)) {
    throw configError(where, 'dtype', value, `tfjs builds layers in ${Object.keys(DTYPES).join(', ')} ` +
        '(mixed policies keep float32 variables); this policy has no tfjs equivalent');
  }
  return DTYPES[name];
}

/** A Keras 3 serialized initializer, regularizer or constraint → tfjs's {class_name, config}. */
function convertObject(where: string, key: string, value: unknown): unknown {
  if (value == null || typeof value === 'string') return value;
  if (!isObject(value) || typeof value.class_name !== 'string') {
    throw configError(where, key, value, 'expected null, a name, or a {class_name, config} object');
  }
  const source = value.class_name;
  const className = RENAMED[source] ?? source;
  const config: Json = isObject(value.config) ? {...value.config} : {};
  if (source === 'L1') config.l2 = 0;
  if (source === 'L2') config.l1 = 0;
  if (className === 'VarianceScaling' && config.distribution === 'untruncated_normal') {
    throw configError(where, key, value, 'tfjs\'s VarianceScaling has no untruncated normal distribution');
  }
  if (registeredClass(className) == null) {
    throw configError(where, key, value, `tfjs has no ${source}${source === 'OrthogonalRegularizer' ?
        ' (it only matters in training: remove the key from model.json to load the model for inference)' :
        ''}`);
  }
  return {class_name: className, config};
}

/** `[name, node, tensor]` or `[[name, node, tensor], ...]` → the nested list, node indices in tfjs's numbering. */
function convertEnds(where: string, key: string, value: unknown, classOf: Map<string, string>): unknown[] {
  if (!Array.isArray(value)) throw configError(where, key, value, 'expected a list of [layer, node, tensor]');
  const list = typeof value[0] === 'string' ? [value] : value;
  return list.map((end) => {
    if (!Array.isArray(end) || end.length < 3 || typeof end[0] !== 'string') {
      throw configError(where, key, value, 'expected [layer, node, tensor] entries');
    }
    return [end[0], tfjsNodeIndex(end[0], end[1], classOf), end[2]];
  });
}

function tfjsNodeIndex(layer: string, node: unknown, classOf: Map<string, string>): unknown {
  return classOf.get(layer) === 'Sequential' && typeof node === 'number' ? node + 1 : node;
}

/** One call of a layer: Keras 3's {args, kwargs}, or an already legacy list (kept). */
function convertNode(where: string, node: unknown, index: number, classOf: Map<string, string>): unknown {
  if (Array.isArray(node)) return node;
  const key = `inbound_nodes[${index}]`;
  if (!isObject(node)) throw configError(where, key, node, 'expected {args, kwargs}');
  const args = Array.isArray(node.args) ? node.args : [];
  const kwargs = isObject(node.kwargs) ? node.kwargs : {};
  for (const [name, value] of Object.entries(kwargs)) {
    if (containsTensor(value)) {
      throw configError(where, `${key}.kwargs.${name}`, '(a tensor)',
          'tfjs layers take their inputs as one tensor or one list, not as keyword arguments');
    }
  }
  if (args.length !== 1) {
    throw configError(where, `${key}.args`, `(${args.length} positional arguments)`,
        'tfjs layers are called with one tensor or one list of tensors');
  }
  const inputs = Array.isArray(args[0]) ? args[0] : [args[0]];
  return inputs.map((tensor, i) => {
    const history = isObject(tensor) && tensor.class_name === '__keras_tensor__' && isObject(tensor.config) ?
        tensor.config.keras_history : undefined;
    if (!Array.isArray(history) || history.length !== 3 || typeof history[0] !== 'string') {
      throw configError(where, `${key}.args[0]${Array.isArray(args[0]) ? `[${i}]` : ''}`, tensor,
          'expected a __keras_tensor__ with keras_history [layer, node, tensor]');
    }
    return [history[0], tfjsNodeIndex(history[0], history[1], classOf), history[2], kwargs];
  });
}

function containsTensor(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(containsTensor);
  if (!isObject(value)) return false;
  return value.class_name === '__keras_tensor__' || Object.values(value).some(containsTensor);
}

/** Keras 3 variable paths → tfjs's `layer/weight` names (see the module comment). */
function renameWeights(specs: tf.io.WeightsManifestEntry[], context: Context): tf.io.WeightsManifestEntry[] {
  const seen = new Map<string, string>();
  return specs.map((spec) => {
    const parts = spec.name.split('/');
    while (parts.length > 2 && context.models.has(parts[0])) parts.shift();
    if (parts.length === 2 && context.depthwise.has(parts[0]) && parts[1] === 'kernel') parts[1] = 'depthwise_kernel';
    const name = parts.join('/');
    const earlier = seen.get(name);
    if (earlier != null) {
      throw configError('Keras 3 model', 'weightsManifest', spec.name, `both '${earlier}' and '${spec.name}' ` +
          `name the weight '${name}' of a tfjs layer; layer names must be unique across nested models`);
    }
    seen.set(name, spec.name);
    return name === spec.name ? spec : {...spec, name};
  });
}
