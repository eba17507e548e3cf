// Inputs a user hands the commands, fed to real child processes (bin/clipgpu.ts under scripts/run.mjs):
// datasets are judged by real paths (links that leave the folder are skipped with one line, a link loop is
// walked once); every size from the user is capped before memory is given to it; an unclosed quote names its
// line; NaN weights are named, never printed as NaN%; long errors stay short and name the file.
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { niceTicks } from '../clip/plot.ts';
import { encodePng } from '../clip/preprocess.ts';
import { train } from '../clip/train.ts';
import { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
import { serializeSafetensorsHost } from '../nn/safetensors.ts';
import { suite } from './harness.ts';
import { TINY_CONFIG, tinyRun } from './train_helpers.ts';

const test = suite('inputs');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));
const clipgpu = (command: string, args: string[]) => spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', command, ...args], { encoding: 'utf8' });
/** One training step on `data` (or the error): enough to list the data and use it. */
const trainOn = (data: string, extra: string[] = []) =>
  clipgpu('train', ['--train-data', data, '--model', 'ViT-tiny', '--batch-size', '2', '--steps', '1', '--vocab-size', '514', '--eval-every', '0', '--out', join(tmp('run'), 'run'), ...extra]);
const png = (value: number) => encodePng({ width: 8, height: 8, data: new Float32Array(8 * 8 * 3).fill(value) });

test('a dataset is judged by real paths: links out of it are skipped with one line each, a link loop is walked once', () => {
  const outside = tmp('outside');
  writeFileSync(join(outside, 'far.png'), png(10));
  writeFileSync(join(outside, 'far.txt'), 'a far image');
  writeFileSync(join(outside, 'secret.txt'), 'a secret');
  const data = tmp('linked');
  for (const i of [1, 2, 3]) {
    writeFileSync(join(data, `${i}.png`), png(40 * i));
    writeFileSync(join(data, `${i}.txt`), `image ${i}`);
  }
  symlinkSync(join(outside, 'far.png'), join(data, 'link.png'));
  writeFileSync(join(data, 'link.txt'), 'a link out');
  writeFileSync(join(data, 'stolen.png'), png(90));
  symlinkSync(join(outside, 'secret.txt'), join(data, 'stolen.txt'));
  symlinkSync(outside, join(data, 'elsewhere'));
  mkdirSync(join(data, 'sub'));
  symlinkSync(data, join(data, 'sub', 'loop'));
  const folder = trainOn(data);
  assert.is(folder.status, 0, folder.stderr);
  assert.match(folder.stdout, /: 3 image–caption pairs, 3 skipped/);
  assert.match(folder.stdout, /skipped .*link\.png: image .*link\.png \(a link to .*far\.png\) is outside the dataset folder/);
  assert.match(folder.stdout, /skipped .*stolen\.txt: a link to .*secret\.txt, outside the dataset folder/);
  assert.match(folder.stdout, /skipped .*elsewhere: a link to .*outside-\w+, outside the dataset folder .* \(allow with --allow-outside-paths\)/);
  // The same files listed by a CSV: the link is judged by where it leads; an over-long caption is skipped, bounded.
  writeFileSync(join(data, 'pairs.csv'), ['filepath,caption', '1.png,one', '2.png,two', `3.png,"${'x'.repeat(100_000)}"`, 'link.png,out', 'sub/loop/1.png,one again', `${'d/'.repeat(5000)}x.png,deep`].join('\n'));
  const csv = trainOn(join(data, 'pairs.csv'));
  assert.is(csv.status, 0, csv.stderr);
  assert.match(csv.stdout, /pairs\.csv:4: field 2 is over 65536 characters/);
  assert.match(csv.stdout, /pairs\.csv:5: image .*link\.png \(a link to .*far\.png\) is outside the dataset folder/);
  assert.match(csv.stdout, /pairs\.csv:7: the filepath field is 10005 characters long, longer than any path\n/);
  assert.match(csv.stdout, /: 3 image–caption pairs, 3 skipped/);
  // One step's loss plot: the point and its moving average differ in the last bit, which once looped forever.
  assert.equal(niceTicks(0.8340651988983154, 0.8340651988983154 + 1e-16), [0.8, 1]);
});

test('user sizes are capped and malformed files named, in one short line: an unclosed quote, a huge header, huge stdin, a huge shard range', () => {
  const data = tmp('csv');
  writeFileSync(join(data, 'open.csv'), 'filepath,caption\na.png,fine\nb.png,"never closed\nc.png,swallowed\n');
  const open = trainOn(join(data, 'open.csv'));
  assert.is(open.status, 1);
  assert.match(open.stderr.trim(), /^train: .*open\.csv:3: a quoted field opens on this line and is never closed/);
  writeFileSync(join(data, 'header.csv'), `${'h'.repeat(5_000_000)}\na.png,x\n`);
  const header = trainOn(join(data, 'header.csv'));
  assert.is(header.status, 1);
  assert.match(header.stderr, /^train: .*header\.csv: header must name columns 'filepath' and 'caption', found \["h{40}…"\]\n$/);
  const tokenize = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'tokenize'], { input: `["${'a'.repeat(20 << 20)}"]`, encoding: 'utf8' });
  assert.is(tokenize.status, 2);
  assert.is(tokenize.stderr, 'tokenize: stdin is over 16 MiB: tokenize it in parts\n');
  const shards = trainOn(join(data, 's-{00000000..99999999}.tar'));
  assert.is(shards.status, 1);
  assert.match(shards.stderr, /^train: .*s-\{00000000\.\.99999999\}\.tar: \{00000000\.\.99999999\} names 100000000 shards, over the limit of 100000\n$/);
});

test('weights with NaN are named, not printed as NaN%; a long mismatch error is one short line naming the file', async () => {
  const run = tmp('nan');
  await train(tinyRun(run, 2, { config: { ...TINY_CONFIG, visionWidth: 64 }, evalEvery: 0 }));
  const file = readSafetensors(join(run, 'model.safetensors'));
  const proj = file.tensors.get('visual.proj')!;
  proj.data[3] = NaN;
  const broken = join(run, 'broken.safetensors');
  writeFileSync(broken, serializeSafetensorsHost(file.tensors, file.metadata));
  writeFileSync(join(run, 'image.png'), png(120));
  const zeroshot = clipgpu('zeroshot', ['--weights', broken, '--vocab', join(run, 'vocab.txt.gz'), '--image', join(run, 'image.png')]);
  assert.is(zeroshot.status, 1);
  assert.match(zeroshot.stderr.trim(), /^zeroshot: .*broken\.safetensors: 'visual\.proj' holds 1 non-finite value \(NaN or Inf\)/);
  assert.not.match(zeroshot.stdout, /NaN/);
  const parity = clipgpu('parity', [broken, broken]);
  assert.is(parity.status, 1);
  assert.match(parity.stderr.trim(), /^parity: .*broken\.safetensors: 'visual\.proj' holds 1 non-finite value/);
  // A checkpoint whose recorded model is not the one its tensors hold: dozens of shape mismatches, one short line.
  const checkpoint = readSafetensors(join(run, 'checkpoint.safetensors'));
  const training = JSON.parse(checkpoint.metadata.training) as { extra: { config: { visionWidth: number } } };
  training.extra.config.visionWidth = 128;
  const tensors = [...checkpoint.tensors].map(([k, t]) => [k, T.Tensor.from(t.data, t.shape, t.dtype)] as [string, T.Tensor]);
  await saveSafetensors(join(run, 'checkpoint.safetensors'), tensors, { ...checkpoint.metadata, training: JSON.stringify(training) });
  for (const [, t] of tensors) t.dispose();
  const resumed = clipgpu('train', ['--resume', '--steps', '3', '--out', run]);
  assert.is(resumed.status, 1);
  const line = resumed.stderr.trim();
  assert.match(line, /^train: .*checkpoint\.safetensors: .*shape mismatches: /);
  assert.ok(line.length < 1000 && !line.includes('\n'), `${line.length} characters: ${line.slice(0, 300)}`);
});

test.run();
