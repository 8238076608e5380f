'use strict';
// Unit tests of the parts that need no model: node --test examples/onnx-matting/
// (the e2e package runs them too).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { PNG } = require('pngjs');
const { parseBg, decodeImage, composite, parseConfig, matteBatch } = require('./server.js');
const { parseThreads, resizeBilinear, toAlpha, toInput, RESOLUTION } = require('./model.js');

test('parseBg reads arrays, strings holding arrays, and defaults to white', () => {
  assert.deepStrictEqual(parseBg(undefined), [255, 255, 255]);
  assert.deepStrictEqual(parseBg(null), [255, 255, 255]);
  assert.deepStrictEqual(parseBg([33, 150, 242]), [33, 150, 242]);
  assert.deepStrictEqual(parseBg('[33, 150, 242]'), [33, 150, 242]);
  for (const bad of ['[1,2]', [1, 2, 256], [1, 2, 3.5], 'red', [-1, 0, 0], {}]) {
    assert.throws(() => parseBg(bad), /invalid "bg"/, JSON.stringify(bad));
  }
});

test('decodeImage decodes the shipped JPEG and a PNG, and refuses the rest', () => {
  const jpeg = fs.readFileSync(path.join(__dirname, 'astronaut.jpg'));
  const img = decodeImage(jpeg.toString('base64'));
  assert.strictEqual(img.width, 512);
  assert.strictEqual(img.height, 512);
  assert.strictEqual(img.rgba.length, 512 * 512 * 4);
  const png = PNG.sync.write({ width: 2, height: 1, data: Buffer.from([1, 2, 3, 255, 4, 5, 6, 255]) });
  const p = decodeImage('data:image/png;base64,' + png.toString('base64'));
  assert.deepStrictEqual([p.width, p.height, ...p.rgba], [2, 1, 1, 2, 3, 255, 4, 5, 6, 255]);
  assert.throws(() => decodeImage(''), /missing "image"/);
  assert.throws(() => decodeImage('!!'), /invalid base64/);
  assert.throws(() => decodeImage(Buffer.from('hello').toString('base64')), /not a PNG or JPEG/);
  // A PNG header claiming a huge canvas is refused before decoding.
  const huge = Buffer.from(png);
  huge.writeUInt32BE(100000, 16);
  assert.throws(() => decodeImage(huge.toString('base64')), /100000x1; want 1 to 4096/);
});

test('composite blends by alpha onto bg', () => {
  const img = { width: 2, height: 1, rgba: Buffer.from([200, 100, 0, 255, 200, 100, 0, 255]) };
  const out = PNG.sync.read(composite(img, Uint8Array.from([255, 0]), [10, 20, 30]));
  assert.deepStrictEqual([...out.data], [200, 100, 0, 255, 10, 20, 30, 255]);
});

test('resizeBilinear samples as the package does', () => {
  // 2x1 to 4x1: x=0 -> src 0, x=1 -> src 0.5, x=2 -> src 1, x=3 -> src 1.5 (clamped).
  assert.deepStrictEqual([...resizeBilinear(Uint8Array.from([0, 100]), 2, 1, 1, 4, 1)], [0, 50, 100, 100]);
});

test('toInput normalises as (v - 128) / 256, planar RGB; toAlpha clamps', () => {
  const rgba = new Uint8Array(RESOLUTION * RESOLUTION * 4);
  rgba.set([0, 128, 255, 7]);
  const input = toInput(rgba);
  const stride = RESOLUTION * RESOLUTION;
  assert.deepStrictEqual([input[0], input[stride], input[2 * stride]], [-0.5, 0, 127 / 256]);
  assert.deepStrictEqual([...toAlpha(Float32Array.from([-0.1, 0, 0.5, 1, 1.2]))], [0, 0, 127, 255, 255]);
});

test('configuration: threads, model and port are checked', () => {
  assert.strictEqual(parseThreads(undefined), 0);
  assert.strictEqual(parseThreads(''), 0);
  assert.strictEqual(parseThreads('0'), 0);
  assert.strictEqual(parseThreads('2'), 2);
  assert.throws(() => parseThreads('two'), /ORT_NUM_THREADS is "two"/);
  assert.throws(() => parseThreads('-1'), /ORT_NUM_THREADS/);
  assert.deepStrictEqual(parseConfig([], {}), { model: 'small', port: 9111, threads: 0 });
  assert.deepStrictEqual(parseConfig(['--model', 'medium'], { PORT: '8000', ORT_NUM_THREADS: '1' }), { model: 'medium', port: 8000, threads: 1 });
  assert.throws(() => parseConfig(['--model', 'large'], {}), /--model is "large"/);
  assert.throws(() => parseConfig([], { PORT: 'x' }), /PORT is "x"/);
  assert.throws(() => parseConfig(['extra'], {}), /unexpected argument/);
});

test('matteBatch answers each item in order, the bad ones alone, the good ones in one model call', async () => {
  const png = PNG.sync.write({ width: 2, height: 1, data: Buffer.from([200, 100, 0, 255, 200, 100, 0, 255]) }).toString('base64');
  const calls = [];
  const model = {
    alphas: async (imgs) => {
      calls.push(imgs.length);
      return imgs.map((img) => new Uint8Array(img.width * img.height).fill(255));
    },
  };
  const answers = await matteBatch(model, [{ image: png }, { image: '!!' }, 7, { image: png, bg: '[1, 2, 3]' }]);
  assert.deepStrictEqual(calls, [2]);
  assert.strictEqual(answers.length, 4);
  assert.ok(answers[0].result && answers[3].result);
  assert.deepStrictEqual(answers[1], { error: 'invalid base64 in "image"', status: 400 });
  assert.strictEqual(answers[2].status, 400);
  assert.match(answers[2].error, /invalid JSON body/);
});
