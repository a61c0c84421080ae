/**
 * recalibrateStatistics: replace the moving averages of every batch-statistics
 * layer by the population statistics of the original BN paper, computed
 * exactly over the given mini-batches:
 *   μ = E[μ_B],   σ² = E[m/(m−1)·σ²_B]   (m = values per channel in a batch;
 *   with equal batches this is the paper's m/(m−1)·E[σ²_B]).
 * Layers are recalibrated in model order, each on inputs produced by the
 * model prefix in inference mode with the layers before it already
 * recalibrated. BatchRenormLayer's moving_stddev becomes √(σ² + ε), keeping
 * Keras's moving_variance = moving_stddev² − ε; its renorm_mean/renorm_stddev
 * (training-time state) are left as they are.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {layoutOf, valuesPerStatistic} from '../kernels/cpu/layout';
import {moments} from '../kernels/cpu/moments';
import {batchStatistics, BatchStatistics, isBatchStatisticsLayer} from './batch_stats';

/** One batch: the model input(s), or a `{xs, ys}` element as `fitDataset` takes it. */
export type CalibrationBatch =
    tf.Tensor | tf.Tensor[] | {xs: tf.Tensor | tf.Tensor[] | tf.NamedTensorMap; ys?: unknown};

/** Anything with the shape of a tf.data.Dataset: `iterator()` resolving to `{next()}`. */
export interface DatasetLike<T> {
  iterator(): Promise<{next(): Promise<IteratorResult<T>>}>;
}

export interface RecalibrationResult {
  /** Names of the recalibrated layers, in the order they were processed. */
  layers: string[];
  /** Batches each layer's statistics were averaged over. */
  batches: number;
}

const NAME = 'recalibrateStatistics';

export async function recalibrateStatistics(
    model: tfl.LayersModel, batches: CalibrationBatch[] | DatasetLike<CalibrationBatch>): Promise<RecalibrationResult> {
  if (!(model instanceof tfl.LayersModel)) throw new Error(`${NAME}: expected a tf.LayersModel.`);
  if (model.inputs == null || model.inputs.length === 0) {
    throw new Error(`${NAME}: the model '${model.name}' is not built; give its first layer an inputShape.`);
  }
  const source = batchSource(batches);
  for (const layer of model.layers) {
    if (layer instanceof tfl.LayersModel && layer.layers.some(isBatchStatisticsLayer)) {
      throw new Error(`${NAME}: the nested model '${layer.name}' contains batch-statistics layers; ` +
          'recalibrate that model on its own inputs, or build the model without nesting.');
    }
  }
  const layers = model.layers.filter(isBatchStatisticsLayer);
  if (layers.length === 0) {
    throw new Error(`${NAME}: the model '${model.name}' has no batch-statistics layers ` +
        '(BatchNormLayer, BatchRenormLayer or tf.layers.batchNormalization); there is nothing to recalibrate.');
  }
  // All or nothing: a failure half-way restores the statistics already rewritten.
  const variables = layers.map((l) => batchStatistics(l)!)
      .flatMap((s) => [s.movingMean, s.movingVariance, s.movingStddev])
      .filter((v): v is tfl.LayerVariable => v != null);
  const saved = variables.map((v) => tf.clone(v.read()));
  try {
    const count = await recalibrateInOrder(model, layers, source);
    return {layers: layers.map((l) => l.name), batches: count};
  } catch (e) {
    variables.forEach((v, i) => v.write(saved[i]));
    throw e;
  } finally {
    tf.dispose(saved);
  }
}

async function recalibrateInOrder(model: tfl.LayersModel, layers: tfl.layers.Layer[], source: BatchSource):
    Promise<number> {
  let count: number | null = null;
  for (const layer of layers) {
    const stats = batchStatistics(layer)!;
    const inputOf = layerInput(model, layer);
    const channels = stats.movingMean.shape[0]!;
    const sums = {mean: new Float64Array(channels), variance: new Float64Array(channels)};
    let n = 0;
    await source.forEach(async (batch) => {
      const inputs = modelInputs(model, batch);
      const h = inputOf(inputs);
      try {
        accumulate(stats, h, sums, n);
      } finally {
        if (!inputs.includes(h)) h.dispose();
      }
      n++;
    });
    if (count != null && n !== count) {
      throw new Error(`${NAME}: the dataset yielded ${count} batches for the first layer and ${n} for ` +
          `'${layer.name}'; each layer reads the whole dataset once, so it must be re-iterable.`);
    }
    if (n === 0) throw new Error(`${NAME}: no batches were given (the list or dataset is empty).`);
    count = n;
    write(stats, sums.mean.map((v) => v / n), sums.variance.map((v) => v / n));
  }
  return count!;
}

interface BatchSource {
  forEach(f: (batch: CalibrationBatch) => Promise<void>): Promise<void>;
}

function batchSource(batches: CalibrationBatch[] | DatasetLike<CalibrationBatch>): BatchSource {
  if (Array.isArray(batches)) {
    return {forEach: async (f) => { for (const b of batches) await f(b); }};
  }
  if (batches != null && typeof (batches as DatasetLike<CalibrationBatch>).iterator === 'function') {
    return {
      forEach: async (f) => {
        const it = await batches.iterator();
        for (let r = await it.next(); !r.done; r = await it.next()) {
          // Dataset elements are fresh tensors (tf.data clones): ours to dispose.
          try {
            await f(r.value);
          } finally {
            tf.dispose(r.value as tf.TensorContainer);
          }
        }
      },
    };
  }
  throw new Error(`${NAME}: batches must be an array of batches or a tf.data.Dataset (anything with iterator()); ` +
      `received ${batches === null ? 'null' : typeof batches}.`);
}

/** The batch as the list of model inputs, in model.inputs order. */
function modelInputs(model: tfl.LayersModel, batch: CalibrationBatch): tf.Tensor[] {
  const xs = batch instanceof tf.Tensor || Array.isArray(batch) ? batch : batch?.xs;
  const list = xs instanceof tf.Tensor ? [xs] : Array.isArray(xs) ? xs :
      xs != null && typeof xs === 'object' ? model.inputNames.map((n) => (xs as tf.NamedTensorMap)[n]) : [];
  if (list.length !== model.inputs.length || !list.every((t) => t instanceof tf.Tensor)) {
    throw new Error(`${NAME}: each batch must be a tensor, an array of ${model.inputs.length} tensor(s) or ` +
        `{xs}, matching the model inputs ${JSON.stringify(model.inputNames)}.`);
  }
  return list;
}

/** Computes a layer's input from the model inputs, in inference mode. */
function layerInput(model: tfl.LayersModel, layer: tfl.layers.Layer): (inputs: tf.Tensor[]) => tf.Tensor {
  if (layer.inboundNodes.length !== 1) {
    throw new Error(`${NAME}: ${layer.getClassName()} '${layer.name}' is applied ${layer.inboundNodes.length} ` +
        'times (a shared layer); its statistics would mix different inputs.');
  }
  const input = layer.input as tfl.SymbolicTensor;
  const direct = model.inputs.indexOf(input);
  if (direct >= 0) return (inputs) => inputs[direct];
  const prefix = tfl.model({inputs: model.inputs, outputs: input});
  return (inputs) => prefix.predictOnBatch(inputs.length === 1 ? inputs[0] : inputs) as tf.Tensor;
}

/**
 * Adds the batch's per-channel mean and unbiased variance, computed in float64
 * by the fused cpu kernels' moments (accurate when the mean dwarfs the spread).
 */
function accumulate(stats: BatchStatistics, h: tf.Tensor, sums: {mean: Float64Array; variance: Float64Array},
    index: number): void {
  const layout = layoutOf(h.shape, stats.axis);
  const m = valuesPerStatistic(layout);
  if (m < 2) {
    throw new Error(`${NAME}: batch ${index} gives ${stats.layer.getClassName()} '${stats.layer.name}' ${m} value ` +
        `per channel (input shape [${h.shape.join(', ')}]); the unbiased variance needs at least 2.`);
  }
  const values = h.dataSync();
  const batch = moments(values instanceof Float32Array ? values : Float32Array.from(values), layout);
  for (let c = 0; c < layout.channels; c++) {
    sums.mean[c] += batch.mean[c];
    sums.variance[c] += batch.variance[c] * m / (m - 1);
  }
}

function write(stats: BatchStatistics, mean: Float64Array, variance: Float64Array): void {
  tf.tidy(() => {
    stats.movingMean.write(tf.tensor1d(Float32Array.from(mean)));
    stats.movingVariance.write(tf.tensor1d(Float32Array.from(variance)));
    stats.movingStddev?.write(tf.tensor1d(Float32Array.from(variance, (v) => Math.sqrt(v + stats.epsilon))));
  });
}
