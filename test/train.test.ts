// The CLIP trainer: exact resume, NaN stops the run with the last checkpoint intact, flat GPU memory.
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { readCsv, readFolder, readShards } from '../clip/data/files.ts';
import { decodeImage, encodePng } from '../clip/preprocess.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { CLIP } from '../clip/model.ts';
import { SCENE_TEMPLATES, SHAPE_WORLD, compositionClasses } from '../clip/data/scenes.ts';
import { lossAndGradients } from '../clip/step.ts';
import { loadClip } from '../clip/io/weights.ts';
import { train } from '../clip/train.ts';
import { assertClose, suite } from './harness.ts';
import { metricsOf, tinyRun as options } from './train_helpers.ts';

const test = suite('train');

test('resuming from a checkpoint reproduces the uninterrupted run step for step', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'train-a-'));
  await train(options(straight, 6));
  const split = mkdtempSync(join(tmpdir(), 'train-b-'));
  await train(options(split, 3, { saveEvery: 3 }));
  await train(options(split, 6, { resume: true }));
  const a = metricsOf(straight).filter((r) => 'loss' in r).map((r) => r.loss);
  const b = metricsOf(split).filter((r) => 'loss' in r && r.step > 3).map((r) => r.loss);
  assert.equal(b, a.slice(3));
  for (const f of ['checkpoint.safetensors', 'model.safetensors', 'vocab.txt.gz', 'loss.svg', 'accuracy.svg']) assert.ok(existsSync(join(split, f)), f);
  // The weights record the prompts and classes their zero-shot evaluation used.
  const saved = loadClip(join(split, 'model.safetensors'));
  assert.equal(saved.prompts, { templates: SCENE_TEMPLATES, classes: compositionClasses(SHAPE_WORLD).names });
  saved.dispose();
  // The trained model evaluates through `npm run eval` (its vocabulary found beside the weights).
  const run = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'eval', '--weights', join(split, 'model.safetensors'), '--seed', '3'], { encoding: 'utf8' });
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, /zero-shot top-1, held-out compositions\s+[\d.]+%/);
  assert.match(run.stdout, /linear probe top-1/);
});

test('GPU memory stays flat across training steps, evaluations and saves', async () => {
  const out = mkdtempSync(join(tmpdir(), 'train-c-'));
  await train(options(out, 24, { saveEvery: 4, evalEvery: 2 }));
  const records = metricsOf(out);
  assert.is(records.filter((r) => 'eval' in r).length, 12);
  const live = records.filter((r) => 'loss' in r).map((r) => r.gpu_live_bytes);
  // From the second evaluation on (the first compiles and pools its buffers), every step ends at the same bytes.
  assert.ok(live.slice(4).every((b) => b === live[4]), `live bytes per step: ${live.join(', ')}`);
});

test('a non-finite loss stops the run, naming the step, and the last checkpoint survives', async () => {
  const out = mkdtempSync(join(tmpdir(), 'train-d-'));
  await train(options(out, 2));
  const good = readFileSync(join(out, 'checkpoint.safetensors'));
  let error: Error | null = null;
  try {
    // An absurd learning rate from the resumed step on: the loss overflows within a few steps.
    await train(options(out, 40, { lr: 1e12, clipGrad: 0, warmup: 0, resume: true, saveEvery: 1000 }));
  } catch (e) {
    error = e as Error;
  }
  assert.ok(error && /loss is (NaN|-?Infinity) at step \d+/.test(error.message), String(error));
  assert.ok(readFileSync(join(out, 'checkpoint.safetensors')).equals(good), 'the checkpoint from step 2 is untouched');
});

test('gradient accumulation with cached features gives the gradients of one big batch', async () => {
  T.manualSeed(4);
  const config = { embedDim: 16, imageResolution: 16, visionLayers: 2, visionWidth: 32, visionPatchSize: 8, contextLength: 8, vocabSize: 64, transformerWidth: 32, transformerHeads: 2, transformerLayers: 1 };
  const model = new CLIP(config);
  const B = 12;
  const images = T.keep(T.randNormal([B, 3, 16, 16]));
  const ids = Int32Array.from({ length: B * 8 }, (_, i) => (i % 8 === 2 + (i % 5) ? 63 : i % 8 > 2 + (i % 5) ? 0 : 1 + ((i * 7) % 60)));
  const tokens = T.keep(T.Tensor.from(ids, [B, 8], 'i32'));
  const full = lossAndGradients(model, images, tokens);
  const reference = await Promise.all(model.parameters().map(async (p) => Array.from(await p.grad!.data())));
  model.zeroGrad();
  const accumulated = lossAndGradients(model, images, tokens, 3);
  assertClose([await accumulated.item()], [await full.item()], 'loss', { atol: 1e-6, rtol: 1e-6 });
  for (const [i, [name, p]] of model.namedParameters().entries()) {
    const scale = Math.max(...reference[i].map(Math.abs), 1e-6);
    assertClose(Array.from(await p.grad!.data()).map((v) => v / scale), reference[i].map((v) => v / scale), `grad ${name}`, { atol: 2e-5, rtol: 0 });
  }
  model.dispose();
});

test('user data: a folder and a CSV of image–caption pairs train, and bad rows and images are reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pairs-'));
  const colours: [string, number[]][] = [['red', [220, 30, 30]], ['green', [30, 200, 40]], ['blue', [40, 60, 220]], ['yellow', [230, 220, 40]], ['white', [240, 240, 240]], ['grey', [120, 120, 120]]];
  for (const [name, rgb] of colours) {
    const data = new Float32Array(20 * 24 * 3);
    for (let p = 0; p < 20 * 24; p++) data.set(rgb, p * 3);
    writeFileSync(join(dir, `${name}.png`), encodePng({ width: 20, height: 24, data }));
    writeFileSync(join(dir, `${name}.txt`), `a ${name} square`);
  }
  writeFileSync(join(dir, 'broken.png'), Buffer.from('not really a png'));
  writeFileSync(join(dir, 'broken.txt'), 'a broken image');
  writeFileSync(join(dir, 'uncaptioned.png'), encodePng({ width: 4, height: 4, data: new Float32Array(4 * 4 * 3) }));
  const folder = readFolder(dir);
  assert.is(folder.pairs.length, 7);
  assert.equal(folder.skipped.map((l) => /uncaptioned\.png: no caption file/.test(l)), [true]);
  const csv = join(dir, 'pairs.csv');
  writeFileSync(csv, ['filepath,caption', 'red.png,"a red square, bright"', 'green.png,a green square', 'missing.png,nothing', 'blue.png', 'yellow.png,'].join('\n'));
  const listing = readCsv(csv);
  assert.equal(listing.pairs.map((p) => p.caption), ['a red square, bright', 'a green square']);
  assert.equal(listing.skipped.length, 3);
  assert.match(listing.skipped.join('\n'), /pairs\.csv:4: image .*missing\.png does not exist/);
  assert.match(listing.skipped.join('\n'), /pairs\.csv:5: 1 fields, header has 2/);
  // The same folder as a webdataset shard (system tar), plus a missing shard in the pattern.
  const tarDir = mkdtempSync(join(tmpdir(), 'shards-'));
  const made = spawnSync('tar', ['-cf', join(tarDir, 'data-000.tar'), '-C', dir, ...readdirSync(dir).filter((f) => !f.endsWith('.csv'))]);
  assert.is(made.status, 0, String(made.stderr));
  const shards = readShards(join(tarDir, 'data-{000..001}.tar'));
  assert.is(shards.pairs.length, 7);
  assert.match(shards.skipped.join('\n'), /data-001\.tar: shard does not exist/);
  assert.match(shards.skipped.join('\n'), /uncaptioned: no caption/);
  const red = shards.pairs.find((p) => p.caption === 'a red square')!;
  assert.equal(Array.from(decodeImage(red.read!(), red.image).data.slice(0, 3)), [220, 30, 30]);
  const lines: string[] = [];
  const out = mkdtempSync(join(tmpdir(), 'train-files-'));
  const result = await train(options(out, 4, { trainData: dir, batchSize: 4, log: (l) => lines.push(l), vocabSize: 530 }));
  assert.match(lines.join('\n'), /7 image–caption pairs, 1 skipped/);
  assert.match(lines.join('\n'), /skipping unreadable image: .*broken\.png: cannot decode|skipping unreadable image: .*broken\.png: not a PNG/);
  assert.equal(result!.zeroShot, {});
  // One validation pair (the last 10% of 7, at least one): its caption is the only candidate, so recall@1 is
  // exactly 1 both ways; a NaN, an empty split or a miscounted rank fails.
  assert.equal(result!.retrieval, { pairs: 1, imageToTextR1: 1, imageToTextR5: 1, textToImageR1: 1, textToImageR5: 1 });
  const shardLines: string[] = [];
  await train(options(mkdtempSync(join(tmpdir(), 'train-shards-')), 2, { trainData: join(tarDir, 'data-{000..001}.tar'), batchSize: 4, log: (l) => shardLines.push(l), vocabSize: 530 }));
  assert.match(shardLines.join('\n'), /7 image–caption pairs, 2 skipped/);
});

test.run();
