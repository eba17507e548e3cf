// What the trainer checks before it touches a run folder, and what a resumed run promises, through the real
// command (bin/clipgpu.ts train under scripts/run.mjs, a child process): every input is checked before
// --overwrite deletes anything; a batch that cannot exist is refused by flag; a resumed run continues its
// checkpoint's model and settings, or names what changed; 0 turns a periodic flag off. And the other commands
// that write or read folders: an export replaces a previous one of either format whole; the demo server
// serves its folder as a jail.
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readSafetensors } from '../nn/io/safetensors.ts';
import { checkpointInfo } from '../nn/checkpoint.ts';
import { assertThrows, suite } from './harness.ts';
import { encodePng } from '../clip/preprocess.ts';
import { TrainingInterrupted, train as trainInProcess } from '../clip/train.ts';
import { saveClip } from '../clip/io/weights.ts';
import { CLIP } from '../clip/model.ts';
import { OPENAI_VOCAB_SIZE } from '../clip/tokenizer.ts';
import * as T from '../ops/index.ts';
import { TINY_CONFIG, metricsOf, tinyRun } from './train_helpers.ts';

const test = suite('run checks');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));
const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).filter((f) => !f.startsWith('.')).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]));
const clipgpu = (command: string, args: string[]) => spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', command, ...args], { encoding: 'utf8' });
const train = (args: string[]) => clipgpu('train', args);

test('a run with evaluation off; resuming it takes the checkpoint\'s settings and model, names what changed, and refuses another model', () => {
  const out = join(tmp('resume-settings'), 'run');
  // The default model (ViT-scenes), a small batch, evaluation off (0): no evaluation at all, not even the final one.
  const first = train(['--batch-size', '8', '--steps', '4', '--lr', '1e-3', '--vocab-size', '600', '--eval-every', '0', '--out', out]);
  assert.is(first.status, 0, first.stderr);
  assert.match(first.stdout, /evaluation\s+off \(--eval-every 0\)/);
  assert.not.match(first.stdout, /eval step|zero-shot top-1/);
  assert.equal(metricsOf(out).filter((r) => 'eval' in r), []);
  const settings = checkpointInfo(readSafetensors(join(out, 'checkpoint.safetensors')), 'checkpoint').extra.settings as Record<string, unknown>;
  assert.equal([settings.batchSize, settings.steps, settings.lr, settings.dataset], [8, 4, 1e-3, 'scenes']);

  // Another model on resume is refused, naming the field (ViT-tiny lacks ViT-scenes's 8-wide vision heads).
  const tiny = train(['--resume', '--model', 'ViT-tiny', '--steps', '6', '--out', out]);
  assert.is(tiny.status, 1);
  assert.match(tiny.stderr.trim(), /^train: --model: .*checkpoint\.safetensors was trained with another model \(visionHeadWidth 8, asked unset\); resume without --model/);

  // Only --steps given: batch size, lr and evaluation off are the checkpoint's (not the defaults: 64, 2e-3,
  // every 350 steps), and the change is said.
  const resumed = train(['--resume', '--steps', '6', '--out', out]);
  assert.is(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /evaluation\s+off \(--eval-every 0\)/);
  assert.match(resumed.stdout, /--resume: continuing with settings that differ from the checkpoint's: --steps 4 → 6 \(the learning-rate schedule changes with them\)/);
  assert.match(resumed.stdout, /model ViT-scenes, batch 8, 6 steps, lr 0\.001/);
  assert.equal(metricsOf(out).map((r) => r.step), [1, 2, 3, 4, 5, 6]);
});

test('every input is checked before --overwrite deletes the previous run; an impossible batch is refused by flag', async () => {
  const out = join(tmp('overwrite'), 'run');
  const made = train(['--model', 'ViT-tiny', '--batch-size', '8', '--steps', '2', '--vocab-size', '600', '--eval-every', '0', '--out', out]);
  assert.is(made.status, 0, made.stderr);
  const before = snapshot(out);
  const bad = join(tmp('bad-init'), 'weights.safetensors');
  writeFileSync(bad, 'not safetensors');
  for (const [args, message] of [
    [['--init-from', bad], /^train: .*weights\.safetensors/],
    [['--batch-size', '1e9'], /^train: --batch-size 1000000000: a batch of 32×32 images is \d+ MiB, over this device's largest buffer/],
    [['--train-data', join(out, 'missing.csv')], /^train: .*missing\.csv: no such file or folder/],
    [['--max-image-bytes=0'], /^train: --max-image-bytes must be an integer ≥ 1, got 0$/],
  ] as const) {
    const r = train([...args, '--overwrite', '--steps', '2', '--out', out]);
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr.trim(), message);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.equal(snapshot(out), before, `${args[0]}: the previous run is untouched`);
    assert.not.ok(existsSync(join(out, '.lock')));
  }
  // A stop asked for before the first step (while the device opened) deletes and writes nothing.
  await assertThrows(() => trainInProcess(tinyRun(out, 2, { overwrite: true, stopRequested: () => true })), TrainingInterrupted, /stopped before the first step: nothing was written/);
  assert.equal(snapshot(out), before, 'a stop before the first step keeps the previous run');
  // A new --out is not left behind, half-made, by a refused batch, nor by a run that failed before its first
  // step (no training image decodes): the corrected command then runs instead of being refused.
  const fresh = join(tmp('fresh'), 'run');
  const r = train(['--batch-size', '1e9', '--out', fresh]);
  assert.is(r.status, 1, r.stderr);
  assert.not.ok(existsSync(fresh), 'no folder was left');
  const data = tmp('undecodable');
  writeFileSync(join(data, 'pairs.csv'), ['filepath,caption', ...[0, 1, 2].map((i) => `${i}.png,broken ${i}`)].join('\n'));
  for (const i of [0, 1, 2]) writeFileSync(join(data, `${i}.png`), 'not a png');
  const broken = train(['--train-data', join(data, 'pairs.csv'), '--batch-size', '2', '--steps', '1', '--vocab-size', '514', '--eval-every', '0', '--out', fresh]);
  assert.is(broken.status, 1, broken.stderr);
  assert.match(broken.stderr.trim(), /^train: training data: no training image could be decoded$/);
  assert.not.ok(existsSync(fresh), 'no half-made run was left');
});

test('export --overwrite into a folder of another format replaces it whole: zeroshot then loads the new model', async () => {
  const [a, b] = [tmp('run-a'), tmp('run-b')];
  await makeRun(a, 1);
  await makeRun(b, 2);
  const out = join(tmp('export'), 'model');
  assert.is(clipgpu('export', ['--run', a, '--to', 'open_clip', '--out', out]).status, 0);
  const replaced = clipgpu('export', ['--run', b, '--to', 'hf', '--out', out, '--overwrite']);
  assert.is(replaced.status, 0, replaced.stderr);
  assert.equal(readdirSync(out).filter((f) => /open_clip|bpe_vocab|^clipgpu-/.test(f)), [], 'no file of the open_clip export is left');
  const image = join(tmp('image'), 'red.png');
  writeFileSync(image, encodePng({ width: 16, height: 16, data: new Float32Array(16 * 16 * 3).fill(200) }));
  const probabilities = (weights: string) => {
    const r = clipgpu('zeroshot', ['--weights', weights, '--image', image, '--json']);
    assert.is(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as { images: { probabilities: number[] }[] }).images[0].probabilities;
  };
  const [fromFolder, fromB] = [probabilities(out), probabilities(join(b, 'model.safetensors'))];
  assert.ok(fromFolder.every((p, i) => Math.abs(p - fromB[i]) < 1e-5), 'the folder holds run b');
  // A training run's folder is never an export's target.
  const trainingRun = tmp('training-run');
  for (const f of ['checkpoint.safetensors', 'metrics.jsonl']) writeFileSync(join(trainingRun, f), '');
  const refused = clipgpu('export', ['--run', a, '--to', 'hf', '--out', trainingRun, '--overwrite']);
  assert.is(refused.status, 1);
  assert.match(refused.stderr.trim(), /^export: --out .* holds a training run \(checkpoint\.safetensors, metrics\.jsonl\): export to another folder$/);
});

/**
 * A run folder as far as export, zeroshot and the demo read one: model.safetensors with its prompts (a seeded
 * untrained model; CLIP's own vocabulary, so no vocab.txt.gz). 64 wide: one 64-wide vision head, which
 * transformers' config can say.
 */
async function makeRun(dir: string, seed: number): Promise<void> {
  T.manualSeed(seed);
  const model = new CLIP({ ...TINY_CONFIG, visionWidth: 64, vocabSize: OPENAI_VOCAB_SIZE });
  model.prompts = { templates: ['a {}.'], classes: ['red circle', 'blue square', 'green cross'] };
  await saveClip(join(dir, 'model.safetensors'), model);
  model.dispose();
}

/** One GET to the server at `url` with the Host header given; resolves to the status and body. */
function get(url: string, path: string, host = new URL(url).host): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the demo server: a malformed URL is a 400 (the server lives on), siblings and symlinks out of its folder are not served, other Host names are refused', async () => {
  const run = tmp('demo-run');
  await makeRun(run, 3);
  const child = spawn(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'demo', '--port', '0', '--run', run], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The page is served from .build/demo: a sibling whose name shares its prefix, and a symlink out of it.
  const sibling = join('.build', `demo-secret-${process.pid}`);
  const link = join('.build', 'demo', `outside-${process.pid}.txt`);
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /demo: (http:\/\/\S+)\//.exec(out);
        if (m) resolve(m[1]);
      });
      child.on('close', (code) => reject(new Error(`demo exited ${code}`)));
    });
    mkdirSync(sibling, { recursive: true });
    writeFileSync(join(sibling, 'secret.txt'), 'secret');
    symlinkSync(resolve(sibling, 'secret.txt'), link);
    assert.is((await get(url, '/%E0%A4%A')).status, 400);
    assert.is((await get(url, `/..%2fdemo-secret-${process.pid}/secret.txt`)).status, 404);
    assert.is((await get(url, `/../demo-secret-${process.pid}/secret.txt`)).status, 404);
    assert.is((await get(url, `/outside-${process.pid}.txt`)).status, 404);
    const rebound = await get(url, '/run/model.safetensors', `evil.example:${new URL(url).port}`);
    assert.is(rebound.status, 403);
    assert.match(rebound.body, /Host 'evil\.example:\d+' is not this machine/);
    assert.is((await get(url, '/run/model.safetensors', `localhost:${new URL(url).port}`)).status, 200);
    assert.is((await get(url, '/index.html')).status, 200, 'still serving');
  } finally {
    child.kill('SIGTERM');
    rmSync(sibling, { recursive: true, force: true });
    rmSync(link, { force: true });
  }
});

test.run();
