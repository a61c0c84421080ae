/** Save to memory and load back, as tfjs does with a file on disk. */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

export async function roundTrip(model: tfl.LayersModel): Promise<{loaded: tfl.LayersModel; artifacts: tf.io.ModelArtifacts}> {
  let artifacts!: tf.io.ModelArtifacts;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  // A JSON round trip of the topology, as a file on disk would give.
  const copy = {...artifacts, modelTopology: JSON.parse(JSON.stringify(artifacts.modelTopology))};
  return {loaded: await tfl.loadLayersModel(tf.io.fromMemory(copy)), artifacts};
}

/** Same weight names in the same order, and the same float32 bits. */
export function expectIdenticalWeights(a: tfl.LayersModel | tfl.layers.Layer, b: tfl.LayersModel | tfl.layers.Layer): void {
  expect(b.weights.map((w) => w.originalName)).toEqual(a.weights.map((w) => w.originalName));
  a.weights.forEach((w, i) => {
    expect(Buffer.from(b.weights[i].read().dataSync().buffer).equals(Buffer.from(w.read().dataSync().buffer))).toBe(true);
  });
}

/** The float32 bits of a tensor, for bit-exact comparisons. */
export function bits(t: tf.Tensor): Buffer {
  return Buffer.from(t.dataSync().buffer);
}
