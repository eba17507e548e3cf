// A run never destroys what the user has: bad options fail before the run folder is touched, another run's
// folder is refused, checkpoints hold only finite weights, evaluation problems never cost the weights, a
// signal saves, two processes never share a folder, inputs are bounded, errors are one line. Crash-safety
// tests kill real child processes.
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { parseDelimited, readCsv, readShards } from '../clip/data/files.ts';
import { openRunFolder } from '../clip/io/run.ts';
import { decodeImage, encodePng } from '../clip/preprocess.ts';
import { TrainingFailed, train } from '../clip/train.ts';
import { loadClip, saveClip, tokenizerFor } from '../clip/io/weights.ts';
import { CLIP } from '../clip/model.ts';
import { FileError, lockDirectory, makeDirectory } from '../core/io/files.ts';
import { readSafetensors, saveSafetensors } from '../nn/io/safetensors.ts';
import { checkpointInfo } from '../nn/checkpoint.ts';
import { assertThrows, suite } from './harness.ts';
import { TINY_CONFIG, metricsOf, tinyRun } from './train_helpers.ts';

const test = suite('reliability');
const tmp = (name: string) => mkdtempSync(join(tmpdir(), `${name}-`));
const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).filter((f) => !f.startsWith('.')).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]));
const runCli = (args: string[]) => spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'train', ...args], { encoding: 'utf8' });

test('bad options fail before anything is written, and another run in --out is refused unless asked', async () => {
  const dir = tmp('keep');
  await train(tinyRun(dir, 2));
  const before = snapshot(dir);
  for (const [bad, message] of [
    [{ batchSize: 0 }, /--batch-size must be an integer ≥ 2, got 0/],
    [{ batchSize: 2.5 }, /--batch-size must be an integer ≥ 2, got 2\.5/],
    [{ steps: 0 }, /--steps must be an integer ≥ 1/],
    [{ lr: -1 }, /--lr must be a positive number, got -1/],
    [{ accumFreq: 3 }, /--accum-freq 3 must divide --batch-size 8/],
    [{ vocabSize: 100 }, /--vocab-size must be an integer ≥ 514/],
  ] as const) {
    await assertThrows(() => train(tinyRun(dir, 2, bad)), RangeError, message);
  }
  await assertThrows(() => train(tinyRun(dir, 2)), FileError, /already holds a run \(checkpoint\.safetensors, model\.safetensors, vocab\.txt\.gz, metrics\.jsonl, loss\.svg, accuracy\.svg\): pass --resume/);
  assert.equal(snapshot(dir), before, 'the existing run is untouched');
  // --overwrite replaces the run: a fresh one of 3 steps, with its own metrics only.
  await train(tinyRun(dir, 3, { overwrite: true, seed: 4 }));
  assert.equal(metricsOf(dir).filter((r) => 'loss' in r).map((r) => r.step), [1, 2, 3]);
  assert.not.equal(snapshot(dir)['model.safetensors'], before['model.safetensors']);
});

test('--resume without a checkpoint fails naming it; a resumed run keeps its model, and a conflicting one is refused', async () => {
  const empty = tmp('empty');
  await assertThrows(() => train(tinyRun(empty, 2, { resume: true })), FileError, /--resume: .*checkpoint\.safetensors does not exist/);
  assert.equal(readdirSync(empty), []);
  const dir = tmp('resume');
  await train(tinyRun(dir, 2, { config: { ...TINY_CONFIG, visionWidth: 64 } }));
  await assertThrows(() => train(tinyRun(dir, 4, { resume: true })), TrainingFailed, /--model: .* was trained with another model \(visionWidth 64, asked 32\); resume without --model/);
  await train(tinyRun(dir, 4, { resume: true, config: undefined }));
  const info = checkpointInfo(readSafetensors(join(dir, 'checkpoint.safetensors')), 'checkpoint');
  assert.is(info.step, 4);
  assert.is((info.extra.config as { visionWidth: number }).visionWidth, 64);
  // Metrics are not duplicated on resume: one record per step.
  const steps = metricsOf(dir).filter((r) => 'loss' in r).map((r) => r.step);
  assert.equal(steps, [1, 2, 3, 4]);
});

test('a diverging run never writes a checkpoint with non-finite weights, and says what it kept', async () => {
  const dir = tmp('nan');
  let error: Error | null = null;
  try {
    await train(tinyRun(dir, 30, { lr: 1e6, warmup: 0, saveEvery: 1, clipGrad: 0 }));
  } catch (e) {
    error = e as Error;
  }
  assert.instance(error, TrainingFailed);
  assert.match(error!.message, /(loss is (NaN|-?Infinity) at step \d+|the weights are not finite after step \d+)/);
  if (existsSync(join(dir, 'checkpoint.safetensors'))) {
    const file = readSafetensors(join(dir, 'checkpoint.safetensors'));
    const bad = [...file.tensors].filter(([, t]) => t.data.some((v) => !Number.isFinite(v))).map(([k]) => k);
    assert.equal(bad, []);
    const step = checkpointInfo(file, 'checkpoint').step;
    assert.match(error!.message, new RegExp(`last good checkpoint \\(.*checkpoint\\.safetensors, step ${step}\\) is kept`));
  } else assert.match(error!.message, /no checkpoint had been saved yet/);
});

test('undecodable validation images are skipped and counted; the run finishes and saves', async () => {
  const data = tmp('pairs');
  const rows = ['filepath,caption'];
  for (let i = 0; i < 20; i++) {
    const rgb = [(i * 40) % 255, (i * 90) % 255, (i * 150) % 255];
    const pixels = new Float32Array(16 * 16 * 3);
    for (let p = 0; p < 256; p++) pixels.set(rgb, 3 * p);
    // The last two rows are the validation split (10%): both broken.
    writeFileSync(join(data, `${i}.png`), i >= 18 ? 'not a png' : encodePng({ width: 16, height: 16, data: pixels }));
    rows.push(`${i}.png,colour ${i}`);
  }
  writeFileSync(join(data, 'pairs.csv'), rows.join('\n'));
  const out = tmp('pairs-run');
  const lines: string[] = [];
  const result = await train(tinyRun(out, 3, { trainData: join(data, 'pairs.csv'), log: (l) => lines.push(l) }));
  assert.is(result!.retrieval, null);
  assert.match(lines.join('\n'), /skipping unreadable image: .*18\.png/);
  assert.match(lines.join('\n'), /retrieval skipped/);
  assert.ok(existsSync(join(out, 'checkpoint.safetensors')) && existsSync(join(out, 'model.safetensors')));
});

/**
 * Runs `npm run train` with `args` in a child process and sends it SIGINT once `step` appears in its output.
 * Resolves to the exit code and the output.
 */
function interruptTraining(args: string[], step: RegExp): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'train', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (step.test(stdout) && !child.killed) {
        child.kill('SIGINT');
      }
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('SIGINT finishes the step, saves and exits 130; the run resumes from there', async () => {
  const out = tmp('sigint');
  const args = ['--model', 'ViT-tiny', '--batch-size', '8', '--steps', '500', '--vocab-size', '600', '--eval-every', '1000', '--save-every', '1000', '--out', out];
  const { code, stderr } = await interruptTraining(args, /step 20\/500/);
  assert.is(code, 130, stderr);
  const stopped = /stopped at step (\d+) of 500: saved (.*checkpoint\.safetensors); continue with --resume/.exec(stderr);
  assert.ok(stopped, stderr);
  const info = checkpointInfo(readSafetensors(join(out, 'checkpoint.safetensors')), 'checkpoint');
  assert.is(info.step, Number(stopped![1]));
  assert.not.ok(existsSync(join(out, '.lock')), 'the lock is released');
  const resumed = runCli([...args.slice(2).map((a) => (a === '500' ? String(info.step + 2) : a)), '--resume']);
  assert.is(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumed from .* at step ${info.step}`));
});

test('a save killed mid-write leaves the previous checkpoint or the new one, and the next start removes its temporary file', async () => {
  const dir = tmp('killed');
  const target = join(dir, 'checkpoint.safetensors');
  const model = new CLIP({ ...TINY_CONFIG, vocabSize: 600 });
  await saveClip(target, model);
  model.dispose();
  const original = readFileSync(target);
  // A child that rewrites the file atomically with large payloads until it is killed.
  const script = join(dir, 'writer.mjs');
  writeFileSync(script, `
    import { writeFileAtomic } from ${JSON.stringify(join(process.cwd(), '.build', 'writer-lib.mjs'))};
    const big = new Uint8Array(64 << 20).fill(7);
    console.log('writing');
    for (;;) writeFileAtomic(${JSON.stringify(target)}, big);
  `);
  const built = spawnSync(process.execPath, ['-e', `require('esbuild').buildSync({ entryPoints: ['core/io/files.ts'], outfile: '.build/writer-lib.mjs', format: 'esm', platform: 'node', bundle: true })`]);
  assert.is(built.status, 0, String(built.stderr));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => setTimeout(resolve, 150)));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.on('close', resolve));
  const after = readFileSync(target);
  assert.ok(after.equals(original) || (after.length === 64 << 20 && after.every((b) => b === 7)), 'the file is one version or the other, never torn');
  const lines: string[] = [];
  const run = openRunFolder(dir, { resume: true, overwrite: false, log: (l) => lines.push(l) });
  run.release();
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  if (lines.length) assert.match(lines.join('\n'), /removed .*\.checkpoint\.safetensors\.\d+\.\d+\.tmp, left by a save that did not finish/);
});

test('two processes never share a run folder; a lock left by a dead process is taken over', async () => {
  const dir = tmp('lock');
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  writeFileSync(join(dir, '.lock'), String(sleeper.pid));
  await assertThrows(() => train(tinyRun(dir, 2)), FileError, new RegExp(`another process \\(pid ${sleeper.pid}\\) is using this run folder`));
  sleeper.kill('SIGKILL');
  await new Promise((resolve) => sleeper.on('close', resolve));
  const release = lockDirectory(dir);
  assert.is(readFileSync(join(dir, '.lock'), 'utf8'), String(process.pid));
  release();
  assert.not.ok(existsSync(join(dir, '.lock')));
});

test('--out where no folder can be made fails at once, naming it', () => {
  assert.throws(() => makeDirectory('/proc/clipgpu-test/run'), /\/proc\/clipgpu-test: cannot create the folder/);
  const file = join(tmp('file'), 'a-file');
  writeFileSync(file, 'x');
  assert.throws(() => makeDirectory(join(file, 'run')), /a-file: not a folder/);
});

test('inputs are bounded: devices, huge files and huge images are refused, naming the row; paths stay in the dataset folder', () => {
  const dir = tmp('bounded');
  writeFileSync(join(dir, 'ok.png'), encodePng({ width: 2, height: 2, data: new Float32Array(12) }));
  const outside = join(tmp('outside'), 'far.png');
  copyFileSync(join(dir, 'ok.png'), outside);
  writeFileSync(join(dir, 'big.png'), new Uint8Array(2048));
  writeFileSync(join(dir, 'pairs.csv'), ['filepath,caption', 'ok.png,fine', '/dev/zero,endless', `${outside},far away`, '../escape.png,up', 'big.png,too big'].join('\n'));
  const listing = readCsv(join(dir, 'pairs.csv'), { limits: { maxBytes: 1024, maxPixels: 1e6, allowOutside: false } });
  assert.equal(listing.pairs.map((p) => p.caption), ['fine']);
  const skipped = listing.skipped.join('\n');
  assert.match(skipped, /pairs\.csv:3: image \/dev\/zero is outside the dataset folder/);
  assert.match(skipped, /pairs\.csv:4: image .*far\.png is outside the dataset folder .* \(allow with --allow-outside-paths\)/);
  assert.match(skipped, /pairs\.csv:6: image .*big\.png is 2048 bytes, over the limit of 1024 \(raise it with --max-image-bytes\)/);
  const allowed = readCsv(join(dir, 'pairs.csv'), { limits: { maxBytes: 1024, maxPixels: 1e6, allowOutside: true } });
  assert.equal(allowed.pairs.map((p) => p.caption), ['fine', 'far away']);
  assert.match(allowed.skipped.join('\n'), /pairs\.csv:3: image \/dev\/zero is not a regular file/);
  // A 470-byte PNG claiming 10000×10000 pixels is refused from its header, before any decoding.
  const png = encodePng({ width: 1, height: 1, data: new Float32Array(3) });
  new DataView(png.buffer, png.byteOffset).setUint32(16, 10000);
  new DataView(png.buffer, png.byteOffset).setUint32(20, 10000);
  assert.throws(() => decodeImage(png, 'huge.png'), /huge\.png: 10000×10000 is 100\.0 megapixels, over the limit of 40\.0/);
});

test('data as tools write it: spreadsheet CSV (BOM, CRLF, quoted commas, quotes and newlines), GNU and pax tar long names', () => {
  const records = parseDelimited('\ufefffilepath,caption\r\na.png,"a red, round ""thing""\r\non two lines"\r\nb.png,plain\r\n', ',');
  assert.equal(records, [
    { line: 1, fields: ['filepath', 'caption'] },
    { line: 2, fields: ['a.png', 'a red, round "thing"\r\non two lines'] },
    { line: 4, fields: ['b.png', 'plain'] },
  ]);
  const dir = tmp('tar');
  const long = `${'a-rather-long-folder-name-'.repeat(5)}/sample-0001`;
  mkdirSync(join(dir, 'src', long.split('/')[0]), { recursive: true });
  writeFileSync(join(dir, 'src', `${long}.png`), encodePng({ width: 2, height: 2, data: new Float32Array(12).fill(200) }));
  writeFileSync(join(dir, 'src', `${long}.txt`), 'a caption behind a long name');
  for (const format of ['gnu', 'pax']) {
    const shard = join(dir, `${format}.tar`);
    const made = spawnSync('tar', [`--format=${format}`, '-cf', shard, '-C', join(dir, 'src'), `${long}.png`, `${long}.txt`]);
    assert.is(made.status, 0, String(made.stderr));
    const listing = readShards(shard);
    assert.equal(listing.skipped, [], format);
    assert.equal(listing.pairs.map((p) => p.caption), ['a caption behind a long name'], format);
    assert.equal(Array.from(decodeImage(listing.pairs[0].read!(), listing.pairs[0].image).data.slice(0, 3)), [200, 200, 200]);
  }
});

test('errors a user can cause are one line, naming the flag or file; a model without its vocabulary says to pass --vocab', async () => {
  const dir = tmp('cli');
  const bad = runCli(['--batch-size=-4', '--out', dir]);
  assert.is(bad.status, 1);
  assert.is(bad.stderr.trim(), 'train: --batch-size must be an integer ≥ 2, got -4');
  const missing = runCli(['--resume', '--out', join(dir, 'nothing')]);
  assert.is(missing.status, 1);
  assert.match(missing.stderr.trim(), /^train: --resume: .*nothing\/checkpoint\.safetensors does not exist[^\n]*$/);
  const unknown = runCli(['--bacth-size', '8']);
  assert.is(unknown.status, 2);
  assert.match(unknown.stderr, /^train: Unknown option '--bacth-size'/);
  const model = new CLIP({ ...TINY_CONFIG, vocabSize: 600 });
  const weights = join(dir, 'model.safetensors');
  await saveClip(weights, model);
  model.dispose();
  assert.throws(() => tokenizerFor(weights, 600), /600-token vocabulary is not CLIP's .* no vocab\.txt\.gz beside it: pass the run's vocabulary with --vocab/);
  // Weights without a config in their metadata: the assumed heads are said, and can be given.
  const bare = join(dir, 'bare.safetensors');
  const file = readSafetensors(weights);
  const tensors = [...file.tensors].map(([k, t]) => [k, T.Tensor.from(t.data, t.shape, t.dtype)] as [string, T.Tensor]);
  await saveSafetensors(bare, tensors);
  for (const [, t] of tensors) t.dispose();
  const notes: string[] = [];
  loadClip(bare, { note: (l) => notes.push(l) }).dispose();
  assert.match(notes.join('\n'), /bare\.safetensors: its metadata does not record the attention heads; assuming 64-wide heads \(vision and text\)/);
  const given = loadClip(bare, { visionHeadWidth: 8, transformerHeads: 2, note: (l) => notes.push(l) });
  assert.equal([given.config.visionHeadWidth, given.config.transformerHeads, notes.length], [8, 2, 1]);
  given.dispose();
});

test.run();
