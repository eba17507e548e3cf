// Using CLIP: preprocessing against a float64 reference, image decoding errors, zero-shot with prompt
// ensembling on a hand-built case, retrieval recall, the linear probe, and the zeroshot CLI end to end.
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import * as T from '../ops/index.ts';
import { defaultTemplates, linearProbe, retrievalRecall, topK, zeroShotClassifier, zeroShotProbabilities } from '../clip/evaluate.ts';
import { l2normalize, CLIP } from '../clip/model.ts';
import { CLIP_MEAN, CLIP_STD, ImageError, cubic, decodeImage, encodePng, preprocess, resizeBicubic, type RgbImage } from '../clip/preprocess.ts';
import { ConfigError } from '../clip/config.ts';
import { loadClip, saveClip } from '../clip/io/weights.ts';
import { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
import { toTensors } from '../nn/safetensors.ts';
import { assertClose, assertThrows, rng, suite } from './harness.ts';

const test = suite('clip-use');
const dir = mkdtempSync(join(tmpdir(), 'clip-use-'));

function randomImage(width: number, height: number, seed: number): RgbImage {
  const r = rng(seed);
  return { width, height, data: Float32Array.from({ length: width * height * 3 }, () => Math.round(r() * 255)) };
}

/** Direct 2-D float64 resampling: each output pixel sums every input pixel weighted by both kernels. */
function resizeReference(img: RgbImage, width: number, height: number): Float64Array {
  const weights = (inSize: number, outSize: number, i: number) => {
    const scale = inSize / outSize;
    const fs = Math.max(scale, 1);
    const center = (i + 0.5) * scale;
    const w = Array.from({ length: inSize }, (_, j) => (Math.abs(j + 0.5 - center) < 2 * fs ? cubic((j + 0.5 - center) / fs) : 0));
    const total = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / total);
  };
  const out = new Float64Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const wy = weights(img.height, height, y);
    for (let x = 0; x < width; x++) {
      const wx = weights(img.width, width, x);
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let j = 0; j < img.height; j++) for (let i = 0; i < img.width; i++) s += wy[j] * wx[i] * img.data[(j * img.width + i) * 3 + c];
        out[(y * width + x) * 3 + c] = Math.min(255, Math.max(0, s));
      }
    }
  }
  return out;
}

test('bicubic resize (shrinking, with antialiasing) is a direct float64 resampling up to its 8-bit rounding', () => {
  // PIL rounds to 8 bits after each pass (±0.5, carried through the second pass's weights) and at the end.
  // Enlarging overshoots and PIL clamps between the passes, which no single 2-D sum does: test/pil.test.ts
  // checks that against PIL itself.
  for (const [w, h, W, H] of [[13, 9, 5, 4], [8, 8, 8, 8], [17, 5, 4, 5], [9, 30, 4, 7]]) {
    const img = randomImage(w, h, w * 100 + h);
    const ours = resizeBicubic(img, W, H).data;
    assert.ok(ours.every(Number.isInteger), `${w}×${h} → ${W}×${H}: 8-bit values`);
    assertClose(ours, resizeReference(img, W, H), `${w}×${h} → ${W}×${H}`, { atol: 1.25, rtol: 0 });
  }
  const flat = { width: 6, height: 5, data: new Float32Array(90).fill(77) };
  assert.ok(resizeBicubic(flat, 3, 11).data.every((v) => v === 77), 'a constant image stays constant');
});

test('preprocess: shorter side to n, centre crop, CLIP normalisation, CHW', () => {
  const img = randomImage(10, 6, 3);
  const n = 4;
  const out = preprocess(img, n);
  assert.is(out.length, 3 * n * n);
  // 10×6 → 6×4 (⌊4·10/6⌋ = 6), crop left = round((6 − 4) / 2) = 1, top = 0.
  const resized = resizeBicubic(img, 6, 4).data;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) {
        const want = (resized[(y * 6 + x + 1) * 3 + c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
        assertClose([out[(c * n + y) * n + x]], [want], `pixel c${c} y${y} x${x}`, { atol: 1e-5 });
      }
});

test('PNG and JPEG decode; unreadable images name the file', async () => {
  const png = new PNG({ width: 2, height: 1 });
  png.data.set([255, 0, 0, 255, 0, 128, 255, 255]);
  const decoded = decodeImage(PNG.sync.write(png), 'a.png');
  assert.equal([decoded.width, decoded.height, ...decoded.data], [2, 1, 255, 0, 0, 0, 128, 255]);
  const raw = { width: 8, height: 8, data: Buffer.alloc(8 * 8 * 4, 200) };
  const jpg = decodeImage(jpeg.encode(raw, 95).data, 'b.jpg');
  assert.ok(jpg.width === 8 && Math.abs(jpg.data[0] - 200) <= 2);
  await assertThrows(() => decodeImage(new Uint8Array([1, 2, 3, 4, 5]), 'notes.txt'), ImageError, /notes\.txt: not a PNG or JPEG/);
  const truncated = PNG.sync.write(png).subarray(0, 30);
  await assertThrows(() => decodeImage(truncated, 'cut.png'), ImageError, /cut\.png: cannot decode/);
});

test('PNGs of every colour type and bit depth decode (fast-png) as an independent decoder (pngjs) reads them', () => {
  const png = new PNG({ width: 3, height: 2 });
  [[255, 0, 0, 255], [0, 128, 255, 255], [10, 20, 30, 255], [200, 200, 200, 128], [0, 0, 0, 0], [255, 255, 255, 255]].forEach((p, i) => png.data.set(p, 4 * i));
  for (const colorType of [0, 2, 4, 6] as const) {
    for (const bitDepth of [8, 16] as const) {
      const bytes = PNG.sync.write(png, { colorType, bitDepth, inputColorType: 6, inputHasAlpha: true });
      const reference = PNG.sync.read(bytes);
      const ours = decodeImage(new Uint8Array(bytes), 'variant.png');
      const want = Array.from({ length: 6 * 3 }, (_, k) => reference.data[4 * Math.floor(k / 3) + (k % 3)]);
      assert.equal(Array.from(ours.data, Math.round), want, `colour type ${colorType}, ${bitDepth} bits`);
    }
  }
});

test('zero-shot: prompt ensembling averages normalised prompt embeddings, and the known class wins', async () => {
  // A hand-built text encoder: each class owns a direction; each template adds its own small offset.
  const classes = ['cat', 'dog', 'car'];
  const templates = ['a photo of a {}.', 'a drawing of a {}.'];
  const vectorOf = (text: string) => {
    const v = [0, 0, 0, 0];
    v[classes.findIndex((c) => text.includes(c))] = 2;
    v[3] = text.includes('drawing') ? 1 : -1;
    return v;
  };
  const encode = (texts: string[]) => T.Tensor.from(texts.flatMap(vectorOf), [texts.length, 4]);
  const W = zeroShotClassifier(encode, classes, templates);
  assert.equal(W.shape, [4, 3]);
  // Both prompts normalised: (2, 0, 0, ±1)/√5; their mean (2/√5, 0, 0, 0) renormalised is e₀.
  assertClose(await T.contiguous(T.transpose(W)).data(), [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], 'ensembled classifier', { atol: 1e-6 });
  const images = l2normalize(T.Tensor.from([0.1, 0.9, 0.2, 0.3, 0.8, 0.1, 0.1, 0], [2, 4]));
  const probs = await zeroShotProbabilities(images, W).data();
  assert.equal(topK(probs, 3, [1, 0], [1]), { 1: 1 });
  assertClose([probs[0] + probs[1] + probs[2]], [1], 'probabilities sum to 1', { atol: 1e-5 });
});

test('retrieval recall@k in both directions', async () => {
  // Image i is closest to text i, except image 2 whose nearest text is 3 (and text 3's nearest image is 2).
  const img = l2normalize(T.Tensor.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0.6, 0.8, 0, 0, 0, 1], [4, 4]));
  const txt = l2normalize(T.Tensor.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0.5, 0.9], [4, 4]));
  const r = await retrievalRecall(img, txt, [1, 2]);
  assert.equal(r.imageToText, { 1: 0.75, 2: 1 });
  assert.equal(r.textToImage, { 1: 0.75, 2: 1 });
});

test('linear probe: picks λ on validation and separates linearly separable features', async () => {
  const make = (n: number, seed: number) => {
    const r = rng(seed);
    const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
    const x = new Float32Array(n * 8);
    labels.forEach((y, i) => {
      for (let d = 0; d < 8; d++) x[i * 8 + d] = (d === y ? 1.5 : 0) + 0.4 * (r() - 0.5);
    });
    return { features: T.keep(T.Tensor.from(x, [n, 8])), labels: T.keep(T.Tensor.from(labels)) };
  };
  const result = await linearProbe(make(60, 1), make(30, 2), make(30, 3), 3, { lambdas: [1e-4, 1e-2, 10], steps: 100 });
  assert.ok(result.testAccuracy >= 0.95, `test accuracy ${result.testAccuracy}`);
  assert.ok(result.lambda < 10, `λ = ${result.lambda} should not be the over-regularised one`);
});

test('the zeroshot command prints probabilities for each image', async () => {
  const model = new CLIP({ embedDim: 16, imageResolution: 16, visionLayers: 1, visionWidth: 64, visionPatchSize: 8, contextLength: 12, vocabSize: 49408, transformerWidth: 64, transformerHeads: 1, transformerLayers: 1 });
  const weights = join(dir, 'w.safetensors');
  await saveClip(weights, model);
  model.dispose();
  const image = join(dir, 'a.png');
  writeFileSync(image, encodePng({ width: 20, height: 18, data: new Float32Array(20 * 18 * 3).fill(120) }));
  const run = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', '--weights', weights, '--image', image, '--labels', 'cat, dog,car'], { encoding: 'utf8' });
  assert.is(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.is(lines[0], image);
  const percents = lines.slice(1).map((l) => Number(/([\d.]+)%/.exec(l)![1]));
  assert.equal(lines.slice(1).map((l) => l.trim().split(/\s+/)[1]).sort(), ['car', 'cat', 'dog']);
  assert.ok(Math.abs(percents.reduce((a, b) => a + b, 0) - 100) < 0.05);
  assert.match(run.stderr, /prompts: "itap of a \{\}\.", /, 'weights without recorded prompts get OpenAI\'s ensemble');
  assert.not.match(run.stderr, /Warning|artificially reduced/, 'Dawn\'s start-up warnings are not shown');
  const noRunPrompts = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', '--weights', weights, '--image', image, '--templates', 'run', '--labels', 'cat'], { encoding: 'utf8' });
  assert.is(noRunPrompts.status, 2);
  assert.match(noRunPrompts.stderr, /--templates run: .*w\.safetensors records no prompts/);
  // --precision: f16 weights give the fp32 probabilities to f16 precision (or, without shader-f16, a refusal
  // naming the feature; auto falls back to fp32 saying so); a value it does not know is one line.
  const probabilities = (precision: string) => {
    const r = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', '--weights', weights, '--image', image, '--labels', 'cat,dog,car', '--json', '--precision', precision], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr, json: r.status === 0 ? (JSON.parse(r.stdout) as unknown) : null };
  };
  const [full, half, auto] = ['fp32', 'f16', 'auto'].map(probabilities);
  assert.is(full.status, 0, full.stderr);
  if (T.gpu().hasFeature('shader-f16')) {
    assert.is(half.status, 0, half.stderr);
    const flat = (j: unknown): number[] => JSON.stringify(j).match(/-?\d+\.\d+(e-?\d+)?/g)!.map(Number);
    assertClose(flat(half.json), flat(full.json), 'f16 probabilities', { atol: 2e-3, rtol: 0 });
    assert.equal(auto.json, half.json, 'auto takes f16 where the device has it');
  } else {
    assert.is(half.status, 1);
    assert.match(half.stderr, /--precision f16 needs the WebGPU feature 'shader-f16'/);
    assert.match(auto.stderr, /lacks 'shader-f16'; running in fp32/);
  }
  const bad = probabilities('bf16');
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^zeroshot: --precision must be fp32, f16 or auto, got 'bf16'\n$/);
});

test('a model\'s recorded prompts survive saving and are what zero-shot uses by default', async () => {
  const model = new CLIP({ embedDim: 16, imageResolution: 16, visionLayers: 1, visionWidth: 64, visionPatchSize: 8, contextLength: 12, vocabSize: 49408, transformerWidth: 64, transformerHeads: 1, transformerLayers: 1 });
  model.prompts = { templates: ['{a} {} drawn', 'there is {a} {}'], classes: ['owl', 'dog', 'cat'] };
  const weights = join(dir, 'prompted.safetensors');
  await saveClip(weights, model);
  model.dispose();
  const loaded = loadClip(weights);
  assert.equal(loaded.prompts, { templates: ['{a} {} drawn', 'there is {a} {}'], classes: ['owl', 'dog', 'cat'] });
  assert.equal(defaultTemplates(loaded), ['{a} {} drawn', 'there is {a} {}']);
  loaded.dispose();
  const image = join(dir, 'grey.png');
  writeFileSync(image, encodePng({ width: 20, height: 18, data: new Float32Array(20 * 18 * 3).fill(120) }));
  const run = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'zeroshot', '--weights', weights, '--image', image], { encoding: 'utf8' });
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stderr, /prompts: "\{a\} \{\} drawn", "there is \{a\} \{\}" \(recorded with the model\)/);
  assert.equal(run.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/)[1]).sort(), ['cat', 'dog', 'owl']);
  // Recorded prompts that are not what a run writes are an error naming the file and the key.
  const bad = join(dir, 'bad-prompts.safetensors');
  const file = readSafetensors(weights);
  const tensors = toTensors(file);
  await saveSafetensors(bad, tensors, { ...file.metadata, zeroshot: '{"templates": "a {}"}' });
  for (const t of tensors.values()) t.dispose();
  await assertThrows(() => loadClip(bad), ConfigError, /bad-prompts\.safetensors: metadata 'zeroshot' must hold non-empty string arrays/);
});

test.run();
