// Kernel selection by measurement: the tuner times what the device can run in every bucket (and on exact shapes)
// in interleaved rounds and keeps the default unless another variant wins by more than the measured spread;
// kernels/policy.ts then runs the tuned variant for that shape or bucket (checked by GPU profile), falls back to
// the default elsewhere, and ignores choices for another adapter.
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shaderDump } from '../core/dump.ts';
import { getEngine } from '../core/engine.ts';
import { useTuning } from '../kernels/io/tuning.ts';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import {
  ROW_PATH_DEFAULT, WIDE_FUSED_DEFAULT, defaultMatmulConfig, explainMatmul, matmulBucket, matmulChoice, matmulConfig, matmulShapeKey,
  matmulUnsupported, rowWalk, useTuningTable, variantName,
} from '../kernels/policy.ts';
import { applyTuning, timingOf, tuneAttention, tuneMatmul, tuneRows, unfusedAttention, winsClearly, type Tuning } from '../kernels/tune.ts';
import { attentionBackward, attentionForward, attentionLanes } from '../kernels/attention.ts';
import { rowLanes } from '../kernels/rows.ts';
import { assertClose, assertTensorClose, randn, suite, toTensor } from './harness.ts';

const test = suite('tune');

test('winsClearly: a candidate replaces the default only when its paired speed-up exceeds the spread', () => {
  assert.ok(winsClearly([10, 10, 10, 10, 10], [12, 12, 12, 12, 12]), 'a steady 20% win');
  assert.not.ok(winsClearly([10, 10, 10, 10, 10], [10.2, 10.1, 10.2, 10.1, 10.2]), '1–2% is within the 3% floor');
  assert.not.ok(winsClearly([10, 10, 10, 10, 10], [8, 14, 9, 13, 11]), 'a 10% median win inside a ±25% spread');
  assert.not.ok(winsClearly([12, 12, 12, 12, 12], [10, 10, 10, 10, 10]), 'slower');
  assert.equal(timingOf([5, 1, 3, 2, 4]), { ms: 3, q25: 2, q75: 4 });
});

test('tuneMatmul: every bucket and tuned shape gets a runnable choice, the default unless another wins clearly', async () => {
  const tuning = await tuneMatmul(T.gpu().name, () => {}, [[40, 24, 72, 'nn']]);
  assert.is(Object.keys(tuning.matmul).length, 82, 'every bucket in each of the three layouts, and the exact shape');
  assert.ok(['sml', 'sml:nt', 'sml:tn', matmulShapeKey(40, 24, 72)].every((b) => b in tuning.matmul));
  for (const [key, { choice, rates }] of Object.entries(tuning.matmul)) {
    assert.is(matmulUnsupported(choice), null, key);
    assert.ok(rates.every((r) => r.gflops > 0 && Number.isFinite(r.gflops) && r.timing!.q25 <= r.timing!.ms && r.timing!.ms <= r.timing!.q75), key);
    const fixed = rates.find((r) => variantName(r.config) === variantName(defaultMatmulConfig()))!;
    const picked = rates.find((r) => variantName(r.config) === variantName(choice))!;
    assert.ok(variantName(choice) === variantName(defaultMatmulConfig()) || picked.gflops > 1.03 * fixed.gflops, `${key}: ${variantName(choice)} ${picked.gflops} vs default ${fixed.gflops}`);
  }
});

test('tuneRows: softmax and layerNorm each get a row path, the default unless another wins clearly', async () => {
  const rows = (await tuneRows()) ?? {};
  if (rowLanes(1024, 4) === null) {
    assert.equal(rows, {});
    return;
  }
  for (const kernel of ['softmax', 'layerNorm'] as const) {
    const t = rows[kernel]!;
    const fixed = t.rates.find((r) => r.path === ROW_PATH_DEFAULT[kernel])!;
    const picked = t.rates.find((r) => r.path === t.choice)!;
    assert.ok(t.choice === fixed.path || picked.gbps > 1.03 * fixed.gbps, `${kernel}: ${JSON.stringify(t)}`);
  }
});

test('rowWalk: the tuned or requested path, with its written fallbacks (registers → subgroup → thread)', () => {
  const lanes = rowLanes(1024, 4);
  assert.equal(rowWalk('softmax', 100, 4, 'registers'), { path: 'thread', lanes: null, chunks: null }, 'a narrow row: a thread');
  assert.equal(rowWalk('softmax', 1024, 1, 'subgroup').path, 'thread', 'rows not read as vec4: a thread');
  if (lanes === null) return;
  assert.equal(rowWalk('softmax', 1024, 4, 'registers'), { path: 'registers', lanes, chunks: 1024 / 4 / lanes });
  assert.equal(rowWalk('softmax', 1028, 4, 'registers'), { path: 'subgroup', lanes, chunks: null }, '257 vec4s do not split over the lanes');
  assert.equal(rowWalk('layerNorm', 1024, 4).path, ROW_PATH_DEFAULT.layerNorm);
  applyTuning({ adapter: T.gpu().name, matmul: {}, rows: { layerNorm: { choice: 'subgroup', rates: [] } } }, T.gpu().name);
  try {
    assert.equal(rowWalk('layerNorm', 1024, 4), { path: 'subgroup', lanes, chunks: null }, 'the table decides');
  } finally {
    useTuningTable(null);
  }
});

test('tuneAttention: 64-wide heads, causal and not, fused or batched matmuls — the default unless the other wins clearly; the choice is what attention then runs', async () => {
  const tuned = (await tuneAttention()) ?? {};
  if (attentionLanes(64, 4) === 1) {
    assert.equal(tuned, {}, 'no subgroup can share a 64-wide row here: nothing to choose');
    return;
  }
  for (const kind of ['causal', 'full'] as const) {
    const t = tuned[kind]!;
    assert.ok(t.rates.every((r) => r.gflops > 0 && Number.isFinite(r.gflops)), kind);
    const fixed = t.rates.find((r) => r.fused === WIDE_FUSED_DEFAULT[kind])!;
    const picked = t.rates.find((r) => r.fused === t.fused)!;
    assert.ok(t.fused === fixed.fused || picked.gflops > 1.03 * fixed.gflops, `${kind}: ${JSON.stringify(t)}`);
  }
  // What the tuner times as the unfused path computes the fused path's gradient (the same work, timed fairly).
  for (const causal of [true, false]) {
    const [q, k, v, g] = [1, 2, 3, 4].map((seed) => toTensor(randn([2, 5, 3, 8], seed)));
    const L = 5;
    const mask = causal ? toTensor(R.Nd.from(Array.from({ length: L * L }, (_, i) => (i % L > Math.floor(i / L) ? -Infinity : 0)), [L, L])) : null;
    const saved = attentionForward(q, k, v, { causal });
    const [dq] = attentionBackward(g, saved, [true, false, false]);
    assertClose(await unfusedAttention(q, k, v, g, mask).data(), await dq!.data(), `tuner's unfused dq${causal ? ', causal' : ''}`, { atol: 1e-5, rtol: 1e-4 });
  }
  // A choice applied is the path taken; an empty one restores the defaults.
  applyTuning({ adapter: T.gpu().name, matmul: {}, attention: { full: { fused: true, rates: [] }, causal: { fused: false, rates: [] } } }, T.gpu().name);
  try {
    assert.equal([T.useFusedAttention(64, false), T.useFusedAttention(64, true), T.useFusedAttention(16, true)], [true, false, true]);
  } finally {
    useTuningTable(null);
  }
  assert.equal([T.useFusedAttention(64, false), T.useFusedAttention(64, true)], [WIDE_FUSED_DEFAULT.full, WIDE_FUSED_DEFAULT.causal]);
});

test('the policy runs the tuned variant for its exact shape, else its bucket, else the default, and ignores another adapter\'s choices', async () => {
  const v2 = { version: 'v2', tm: 4, tn: 8 } as const;
  const bucket = matmulBucket(300, 200, 100); // medium M and N, medium K
  const tuning: Tuning = { adapter: T.gpu().name, matmul: { [bucket]: { choice: v2, rates: [] } } };
  assert.is(applyTuning({ ...tuning, adapter: 'another adapter' }, T.gpu().name), null);
  assert.equal(matmulConfig(300, 200, 100), defaultMatmulConfig());
  applyTuning(tuning, T.gpu().name);
  try {
    assert.equal(matmulConfig(300, 200, 100), v2);
    assert.equal(matmulConfig(30, 20, 10), defaultMatmulConfig());
    assert.equal(matmulConfig(300, 200, 100, 'tn'), defaultMatmulConfig(), 'a choice holds for its layout only');
    assert.match(explainMatmul(300, 200, 100), /v2 4x8 — tuned bucket \(table entry mmm\)/);
    assert.match(explainMatmul(30, 20, 10), /— default \(no tuned entry/);
    const [a, b] = [randn([300, 100], 1), randn([100, 200], 2)];
    let out: T.Tensor | null = null;
    const kernels = await T.profile(() => (out = T.matmul(toTensor(a), toTensor(b))));
    if (kernels) assert.ok(kernels.some((k) => k.name.startsWith('matmul_v2_4x8')), kernels.map((k) => k.name).join(', '));
    await assertTensorClose(out!, R.matmul(a, b), 'tuned matmul', { atol: 1e-4, rtol: 1e-5 });
    // The same product with A as a transposed view (a weight gradient's layout) takes that layout's choice.
    const v3wide = { version: 'v3', tm: 8, tn: 8 } as const;
    if (matmulUnsupported(v3wide) === null) {
      const exact = { version: 'v2', tm: 8, tn: 4 } as const;
      const entry = (choice: typeof v3wide | typeof exact) => ({ choice, rates: [] });
      applyTuning({ ...tuning, matmul: { ...tuning.matmul, [matmulBucket(300, 200, 100, 'tn')]: entry(v3wide), [matmulShapeKey(300, 200, 100, 'tn')]: entry(exact) } }, T.gpu().name);
      assert.equal(matmulChoice(300, 200, 100, 'tn'), { config: exact, source: 'tuned shape', key: matmulShapeKey(300, 200, 100, 'tn') }, 'an exact shape before its bucket');
      assert.equal(matmulChoice(301, 200, 100, 'tn').config, v3wide, 'a neighbour takes the bucket');
      applyTuning({ ...tuning, matmul: { [matmulBucket(300, 200, 100, 'tn')]: entry(v3wide) } }, T.gpu().name);
      let outT: T.Tensor | null = null;
      const at = T.transpose(toTensor(R.permute(a, [1, 0])));
      const kernelsT = await T.profile(() => (outT = T.matmul(at, toTensor(b))));
      if (kernelsT) assert.ok(kernelsT.some((k) => k.name.startsWith('matmul_v3_8x8_ascalar')), kernelsT.map((k) => k.name).join(', '));
      await assertTensorClose(outT!, R.matmul(a, b), 'tuned matmul, transposed A', { atol: 1e-4, rtol: 1e-5 });
    }
  } finally {
    useTuningTable(null);
  }
});

test('useTuning applies the choices cached for this adapter (CLIPGPU_TUNING names the cache file)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tuning-'));
  const path = join(dir, 'tuning.json');
  const v2 = { version: 'v2', tm: 8, tn: 8 } as const;
  writeFileSync(path, JSON.stringify({ [T.gpu().name]: { adapter: T.gpu().name, matmul: { sss: { choice: v2, rates: [] } } } }));
  const previous = process.env.CLIPGPU_TUNING;
  process.env.CLIPGPU_TUNING = path;
  try {
    assert.ok(await useTuning());
    assert.equal(matmulConfig(10, 10, 10), v2);
  } finally {
    useTuningTable(null);
    if (previous === undefined) delete process.env.CLIPGPU_TUNING;
    else process.env.CLIPGPU_TUNING = previous;
  }
});

test('CLIPGPU_DUMP_WGSL writes the shader that ran, named by kernel (variant, dtypes) and adapter, headed by its key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wgsl-'));
  const previous = process.env.CLIPGPU_DUMP_WGSL;
  process.env.CLIPGPU_DUMP_WGSL = dir;
  const dump = shaderDump(() => T.gpu().name);
  if (previous === undefined) delete process.env.CLIPGPU_DUMP_WGSL;
  else process.env.CLIPGPU_DUMP_WGSL = previous;
  assert.ok(dump, 'the variable switches the dump on');
  const half = T.gpu().hasFeature('shader-f16');
  const [a, b] = [T.randNormal([5, 12]), T.randNormal([12, 9])].map((t) => (half ? T.cast(t, 'f16') : t));
  const names = (await T.profile(() => T.matmul(a, b)))?.map((k) => k.name) ?? [];
  assert.ok(names.length, 'lavapipe has timestamp-query: the kernel that ran is named');
  const name = names.find((n) => n.startsWith('matmul_'))!;
  const kernel = getEngine().kernel(name, () => assert.unreachable('the kernel that ran is cached under its name') as never);
  dump!(kernel, name);
  const file = readdirSync(dir).find((f) => f.startsWith(`${name}.`))!;
  assert.ok(file.endsWith('.wgsl') && file.includes(T.gpu().name.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 20)), file);
  const text = readFileSync(join(dir, file), 'utf8');
  assert.ok(text.startsWith(`// kernel  ${name}\n// key     ${name}\n// adapter ${T.gpu().name}\n`), text.slice(0, 200));
  assert.ok(text.endsWith(`${kernel.source}\n`), 'the file holds the compiled source whole');
  if (half) assert.ok(kernel.source.startsWith('enable f16;') && /alias c_t = f16;/.test(kernel.source) && /c_t\(/.test(kernel.source), 'f16 storage through the binding aliases');
});

test('clipgpu tune --explain refuses a malformed product in one line, before the device opens or anything is tuned', () => {
  for (const [args, message] of [
    [['--explain'], /^tune: --explain: give a product MxKxN/],
    [['--explain', '3x4'], /^tune: --explain: '3x4' is not a product MxKxN/],
  ] as const) {
    const run = spawnSync(process.execPath, ['scripts/run.mjs', 'bin/clipgpu.ts', 'tune', ...args], { encoding: 'utf8' });
    assert.is.not(run.status, 0);
    assert.match(run.stderr.trim(), message);
    assert.is(run.stderr.trim().split('\n').length, 1, run.stderr);
    assert.not.match(run.stdout, /adapter:/, 'refused before the device opened');
  }
});

test.run();
