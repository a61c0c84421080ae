/**
 * Resumable training, shared by resume.test.ts and the child process it
 * spawns (resume_child.ts): the model, the data of every step and the
 * training loop, so both processes do exactly the same arithmetic.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {BatchNormLayer, BatchRenormLayer, GroupNormLayer} from '../../src';
import {randomData} from '../helpers/reference';

const SHAPE = [3, 3, 4];

/** BN → Dense → BRN (with the warm-up schedule) → Dense → GN → Dense. */
export function buildResumeModel(): tfl.LayersModel {
  const model = tfl.sequential({layers: [
    new BatchNormLayer({name: 'bn', inputShape: SHAPE, momentum: 0.9}),
    tfl.layers.dense({units: 4, name: 'd1'}),
    new BatchRenormLayer({
      name: 'brn', momentum: 0.9, renormMomentum: 0.8, renormClipping: {rmin: 0.5, rmax: 2, dmax: 1},
      renormWarmup: {plainSteps: 4, rmaxReachedAt: 16, dmaxReachedAt: 12},
    }),
    tfl.layers.dense({units: 4, name: 'd2'}),
    new GroupNormLayer({name: 'gn', groups: 2}),
    tfl.layers.flatten(),
    tfl.layers.dense({units: 1, name: 'head'}),
  ]});
  compileForResume(model);
  return model;
}

/** SGD keeps no state, so a model compiled afresh after loading continues exactly. */
export function compileForResume(model: tfl.LayersModel): void {
  model.compile({optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError'});
}

/** Fixed data for step i: batch sizes 2..7, inputs and targets from seeded streams. */
function batchAt(step: number): {xs: tf.Tensor; ys: tf.Tensor} {
  const b = 2 + (step * 5) % 6;
  const n = b * SHAPE.reduce((p, q) => p * q);
  return {xs: tf.tensor(randomData(n, 1000 + step, 1, 2), [b, ...SHAPE]), ys: tf.tensor(randomData(b, 5000 + step), [b, 1])};
}

/** Trains steps [from, to) one batch each. */
export async function trainSteps(model: tfl.LayersModel, from: number, to: number): Promise<void> {
  for (let step = from; step < to; step++) {
    const {xs, ys} = batchAt(step);
    await model.trainOnBatch(xs, ys);
    tf.dispose([xs, ys]);
  }
}
