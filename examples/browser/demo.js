// tfjs-normalization demo: the three layers in one model, trained on two
// spirals in the page, saved to IndexedDB, reloaded and compared.
// Globals: `tf` (@tensorflow/tfjs script tag) and `tfnorm` (tfjs-normalization.min.js).
// The outcome is published as `window.demoResult` for the browser tests.
/* global tf, tfnorm */
'use strict';

(async function main() {
  const params = new URLSearchParams(location.search);
  const backend = params.get('backend') || 'webgl';
  const epochs = Number(params.get('epochs') || 60);
  const $ = (id) => document.getElementById(id);
  try {
    if (!(await tf.setBackend(backend))) throw new Error(`the ${backend} backend failed to initialize`);
    const backendInfo = describeBackend();
    $('backend').textContent = `Backend: ${backendInfo.backend}` +
        (backendInfo.renderer ? ` (WebGL ${backendInfo.webglVersion}, ${backendInfo.renderer})` : '');

    const data = twoSpirals(200, 0.04, 7);
    const model = buildModel();
    const losses = [];
    $('status').textContent = `training 0/${epochs}`;
    await model.fit(data.x, data.y, {
      epochs, batchSize: 32, shuffle: true, verbose: 0,
      callbacks: {
        onEpochEnd: async (epoch, logs) => {
          losses.push(logs.loss);
          $('progress').value = (epoch + 1) / epochs;
          $('status').textContent = `training ${epoch + 1}/${epochs}, loss ${logs.loss.toFixed(4)}`;
          drawLoss($('loss'), losses, epochs);
          await tf.nextFrame();
        },
      },
    });

    $('status').textContent = 'saving to IndexedDB and reloading';
    const url = `indexeddb://tfjs-normalization-demo-${backend}`;
    await model.save(url);
    const reloaded = await tf.loadLayersModel(url);
    runEveryOpOnBackend();
    const comparison = compareModels(model, reloaded, data.x);
    const accuracy = tf.tidy(() => tf.mean(tf.equal(tf.greater(reloaded.predict(data.x), 0.5), data.y)).arraySync());
    drawBoundary($('boundary'), reloaded, data);
    showResult(comparison, accuracy);
    $('status').textContent = 'done';

    window.demoModel = model;
    window.demoResult = {
      done: true, ok: comparison.ok, ...backendInfo, url, epochs, losses, accuracy,
      layerClasses: reloaded.layers.map((l) => l.getClassName()),
      weights: comparison.weights, maxWeightDiff: comparison.maxWeightDiff,
      maxPredictionDiff: comparison.maxPredictionDiff, numTensors: tf.memory().numTensors,
    };
  } catch (err) {
    $('result').className = 'fail';
    $('result').textContent = `FAIL: ${err.message}`;
    $('status').textContent = 'failed';
    window.demoResult = {done: true, ok: false, error: String(err.stack || err)};
  }

  function describeBackend() {
    const info = {backend: tf.getBackend(), webglVersion: null, renderer: null, float32Textures: null};
    if (info.backend === 'webgl') {
      const gl = tf.backend().gpgpu.gl;
      const debug = gl.getExtension('WEBGL_debug_renderer_info');
      info.webglVersion = tf.env().getNumber('WEBGL_VERSION');
      info.renderer = gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER);
      info.float32Textures = tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED');
    }
    return info;
  }

})();

/**
 * The webgl backend runs small ops on the CPU when their inputs are there
 * (WEBGL_CPU_FORWARD): the reloaded model's weights are, the trained model's
 * are on the GPU, so the two would differ by float rounding (up to ~1e-6 on
 * SwiftShader) that has nothing to do with saving. Compare with every op on the GPU.
 */
function runEveryOpOnBackend() {
  if (tf.getBackend() === 'webgl') tf.env().set('WEBGL_CPU_FORWARD', false);
}

/** Two interleaved spirals, `n` points per class, seeded so every run sees the same data. */
function twoSpirals(n, noise, seed) {
  const random = mulberry32(seed);
  const points = [];
  const labels = [];
  for (let i = 0; i < n; i++) {
    const t = 0.3 + 2.7 * Math.PI * (i / n);
    for (const sign of [1, -1]) {
      points.push([sign * t * Math.cos(t) / 9 + noise * (random() - 0.5),
        sign * t * Math.sin(t) / 9 + noise * (random() - 0.5)]);
      labels.push([sign > 0 ? 1 : 0]);
    }
  }
  return {points, labels, x: tf.tensor2d(points), y: tf.tensor2d(labels)};
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Dense → norm → relu, three times, one of each normalization layer;
 * momentum 0.9 so that a short run moves the statistics.
 */
function buildModel() {
  const dense = (config) => tf.layers.dense({units: 32, useBias: false, ...config});
  const relu = () => tf.layers.activation({activation: 'relu'});
  const model = tf.sequential({layers: [
    dense({inputShape: [2]}), tfnorm.batchNorm({momentum: 0.9}), relu(),
    dense({}), tfnorm.batchRenorm({momentum: 0.9, renormMomentum: 0.9, renormClipping: {rmax: 3, dmax: 5}}), relu(),
    dense({}), tfnorm.groupNorm({groups: 8}), relu(),
    tf.layers.dense({units: 1, activation: 'sigmoid'}),
  ]});
  model.compile({optimizer: tf.train.adam(0.02), loss: 'binaryCrossentropy'});
  return model;
}

/** Every weight bit for bit (by name) and the predictions of both models. */
function compareModels(model, reloaded, x) {
  const loaded = new Map(reloaded.weights.map((w) => [w.originalName, w]));
  const weights = model.weights.map((w) => {
    const other = loaded.get(w.originalName);
    const a = w.read().dataSync();
    const b = other == null ? new Float32Array(0) : other.read().dataSync();
    const bitsA = new Uint32Array(a.buffer, a.byteOffset, a.length);
    const bitsB = new Uint32Array(b.buffer, b.byteOffset, b.length);
    let maxDiff = a.length === b.length ? 0 : Infinity;
    let bitIdentical = a.length === b.length;
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      if (bitsA[i] !== bitsB[i]) bitIdentical = false;
    }
    return {name: w.originalName, shape: w.shape, trainable: w.trainable, bitIdentical, maxDiff};
  });
  const maxPredictionDiff = tf.tidy(() => tf.max(tf.abs(tf.sub(model.predict(x), reloaded.predict(x)))).arraySync());
  const maxWeightDiff = Math.max(...weights.map((w) => w.maxDiff));
  const ok = weights.length === reloaded.weights.length && weights.every((w) => w.bitIdentical) &&
      maxPredictionDiff <= 1e-6;
  return {ok, weights, maxWeightDiff, maxPredictionDiff};
}

function showResult(comparison, accuracy) {
  const result = document.getElementById('result');
  const statistics = comparison.weights.filter((w) => !w.trainable).length;
  result.className = comparison.ok ? 'pass' : 'fail';
  result.textContent = `${comparison.ok ? 'PASS' : 'FAIL'}: reloaded from IndexedDB, ` +
      `${comparison.weights.filter((w) => w.bitIdentical).length}/${comparison.weights.length} weights ` +
      `bit-identical (${statistics} moving statistics), max weight diff ${comparison.maxWeightDiff}, ` +
      `max prediction diff ${comparison.maxPredictionDiff} (limit 1e-6); accuracy ${(100 * accuracy).toFixed(1)}%`;
  const table = document.getElementById('weights');
  table.innerHTML = '<tr><th>weight</th><th>shape</th><th>kind</th><th>after reload</th></tr>';
  for (const w of comparison.weights) {
    const row = table.insertRow();
    for (const text of [w.name, `[${w.shape}]`, w.trainable ? 'trainable' : 'statistic',
      w.bitIdentical ? 'bit-identical' : `differs by ${w.maxDiff}`]) {
      row.insertCell().textContent = text;
    }
  }
}

function drawLoss(canvas, losses, epochs) {
  const ctx = canvas.getContext('2d');
  const pad = 30;
  const top = 1.1 * Math.max(...losses);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = '#999';
  ctx.strokeRect(pad, 10, canvas.width - pad - 10, canvas.height - pad - 10);
  ctx.fillStyle = '#444';
  ctx.font = '11px sans-serif';
  ctx.fillText(top.toFixed(2), 2, 18);
  ctx.fillText('0', 18, canvas.height - pad);
  ctx.fillText(`epoch ${epochs}`, canvas.width - 60, canvas.height - 12);
  ctx.strokeStyle = '#1565c0';
  ctx.lineWidth = 2;
  ctx.beginPath();
  losses.forEach((loss, i) => {
    const px = pad + (canvas.width - pad - 10) * (i + 1) / epochs;
    const py = 10 + (canvas.height - pad - 10) * (1 - loss / top);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.stroke();
}

/** The model's probability over the plane as a background, with the data on top. */
function drawBoundary(canvas, model, data) {
  const cells = 44;
  const span = 1.2;
  const grid = [];
  for (let j = 0; j < cells; j++) {
    for (let i = 0; i < cells; i++) grid.push([span * (2 * (i + 0.5) / cells - 1), span * (1 - 2 * (j + 0.5) / cells)]);
  }
  const probs = tf.tidy(() => model.predict(tf.tensor2d(grid)).dataSync());
  const ctx = canvas.getContext('2d');
  const size = canvas.width / cells;
  probs.forEach((p, k) => {
    const [r, g, b] = [255 - 80 * p, 200 + 30 * (1 - Math.abs(2 * p - 1)), 175 + 80 * p].map(Math.round);
    ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
    ctx.fillRect((k % cells) * size, Math.floor(k / cells) * size, size + 1, size + 1);
  });
  data.points.forEach(([x, y], k) => {
    ctx.fillStyle = data.labels[k][0] === 1 ? '#0d47a1' : '#b71c1c';
    ctx.beginPath();
    ctx.arc((x / span + 1) / 2 * canvas.width, (1 - y / span) / 2 * canvas.height, 2, 0, 2 * Math.PI);
    ctx.fill();
  });
}
