// Mixed precision end to end: autocast's policy in the layers, dynamic loss scaling (GradScaler's rules), parity
// of f16 inference and amp training steps with openai/CLIP's f32 outputs, f16 weights (CLIP.half()), and a
// training run in amp whose loss scale is logged and survives a resume. Skipped where the device lacks
// shader-f16 (the trainer's refusal is tested there).
import * as assert from 'uvu/assert';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { CLIP } from '../clip/model.ts';
import { HALF_TOLERANCE, parity } from '../clip/parity.ts';
import { CapturedAmpStep, lossAndGradients, trainStepAmp } from '../clip/step.ts';
import { checkDevice, train } from '../clip/train.ts';
import { loadClip, saveClip } from '../clip/io/weights.ts';
import { clipFromSafetensors } from '../clip/weights.ts';
import { evaluateClip } from '../clip/evaluate.ts';
import { builtinSource } from '../clip/data/index.ts';
import { readTokenizer } from '../clip/io/vocab.ts';
import { Linear, LayerNorm } from '../nn/layers.ts';
import { checkpointInfo } from '../nn/checkpoint.ts';
import { unscaleRaw } from '../kernels/optimizer.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler, autocast, computeDType } from '../nn/precision.ts';
import { readSafetensors } from '../nn/io/safetensors.ts';
import { FIXTURES, assertClose, assertThrows, randn, suite, toTensor } from './harness.ts';
import { TINY_CONFIG, metricsOf, tinyRun } from './train_helpers.ts';

const test = suite('amp');
const hasF16 = T.gpu().hasFeature('shader-f16');
const dir = mkdtempSync(join(tmpdir(), 'amp-'));

test('a cast to the dtype a tensor already has keeps the gradient path (autocast casts whatever it is given)', async () => {
  const p = T.param(toTensor(randn([3, 2], 1)));
  T.backward(T.sum(T.mul(T.cast(p, 'f32'), 3)));
  assertClose(await p.grad!.data(), [3, 3, 3, 3, 3, 3], 'd(3·cast(p))/dp');
  p.dispose();
});

test('GradScaler: an overflow drops the gradients and halves the scale; good steps unscale, and grow it after the interval', async () => {
  const p = T.param(T.zeros([4]));
  const scaler = new GradScaler({ initScale: 1024, growthInterval: 2 });
  p.grad = T.keep(T.Tensor.from([1, Infinity, 2, 3]));
  assert.equal(await scaler.unscale([p]), false);
  assert.equal([p.grad, scaler.scale, scaler.goodSteps], [null, 512, 0]);
  p.grad = T.keep(T.Tensor.from([512, -1024, 0, NaN]));
  assert.equal(await scaler.unscale([p]), false, 'NaN is an overflow too');
  assert.equal(scaler.scale, 256);
  for (const step of [1, 2]) {
    p.grad = T.keep(T.Tensor.from([256, -512, 0, 128]));
    assert.equal(await scaler.unscale([p]), true);
    assertClose(await p.grad!.data(), [1, -2, 0, 0.5], `unscaled, good step ${step}`);
    p.grad.dispose();
    p.grad = null;
  }
  assert.equal([scaler.scale, scaler.goodSteps], [512, 0], 'grows ×2 after two good steps in a row');
  const copy = new GradScaler();
  copy.load(scaler.state());
  assert.equal(copy.state(), { scale: 512, goodSteps: 0 });
  await assertThrows(() => new GradScaler({ backoffFactor: 2 }), RangeError, /0 < backoffFactor < 1/);
  await assertThrows(() => copy.load({ scale: 0, goodSteps: 1 }), RangeError, /scale > 0/);
  p.dispose();
});

test('one unscale dispatch takes several gradients: each divided in place, a non-finite value in any one flags them all', async () => {
  for (const sizes of [[4, 8, 12], [5, 3, 8, 1]]) {
    for (const bad of [false, true]) {
      const values = sizes.map((n, k) => Array.from({ length: n }, (_, i) => (bad && k === sizes.length - 1 && i === n - 1 ? Infinity : k * 100 + i - 2)));
      const grads = values.map((v) => T.Tensor.from(v));
      const flag = T.zeros([1], 'i32');
      unscaleRaw(grads, 0.25, flag);
      assert.is(await flag.item(), bad ? 1 : 0, `sizes ${sizes}, ${bad ? 'an Inf in the last' : 'all finite'}`);
      for (const [k, g] of grads.entries()) assert.equal([...(await g.data())], values[k].map((v) => v * 0.25), `gradient ${k} of sizes ${sizes}`);
      for (const t of [...grads, flag]) t.dispose();
    }
  }
  const [shared, flag] = [T.zeros([8]), T.zeros([1], 'i32')];
  const view = shared.view([8]);
  await assertThrows(() => unscaleRaw([shared, view], 0.5, flag), Error, /share a buffer/);
  for (const t of [shared, view, flag]) t.dispose();
});

test('the unscale kernel divides in place and flags ±Inf and NaN by their exponent bits, never large finite values (vec4 and scalar)', async () => {
  for (const n of [8, 7]) {
    for (const [bad, value] of [[false, 3e38], [false, 1e-45], [true, Infinity], [true, -Infinity], [true, NaN]] as const) {
      const values = Array.from({ length: n }, (_, i) => (i === n - 2 ? value : i - 3));
      const base = T.Tensor.from([0, ...values]);
      const g = base.view([n], [1], 1); // at an offset: the kernel honours it
      const flag = T.zeros([1], 'i32');
      unscaleRaw([g], 0.5, flag);
      assert.is(await flag.item(), bad ? 1 : 0, `${value} among ${n}`);
      const got = await base.data();
      const want = [0, ...values.map((v) => v * 0.5)];
      for (let i = 0; i <= n; i++) assert.ok(Object.is(got[i], Math.fround(want[i])) || (Number.isNaN(got[i]) && Number.isNaN(want[i])), `element ${i}: ${got[i]} vs ${want[i]}`);
      for (const t of [base, g, flag]) t.dispose();
    }
  }
});

test('GradScaler.unscale divides each gradient once, also when two leaves\' gradients share one storage', async () => {
  const [a, b] = [T.param(T.zeros([6])), T.param(T.zeros([6]))];
  T.backward(T.sum(T.mul(T.add(a, b), 8))); // add's rule hands both leaves views of one gradient
  assert.ok(a.grad!.storage === b.grad!.storage, 'the two gradients alias (what this test is about)');
  const scaler = new GradScaler({ initScale: 4 });
  assert.equal(await scaler.unscale([a, b]), true);
  assertClose(await a.grad!.data(), [2, 2, 2, 2, 2, 2], 'a');
  assertClose(await b.grad!.data(), [2, 2, 2, 2, 2, 2], 'b');
  for (const t of [a, b]) t.dispose();
});

if (!hasF16) {
  test('--precision amp on a device without shader-f16 is refused, naming the feature', async () => {
    await assertThrows(() => checkDevice(tinyRun(join(dir, 'nof16'), 1, { precision: 'amp' })), RangeError, /--precision amp needs the WebGPU feature 'shader-f16'.*--precision fp32/);
  });
} else {
  test('autocast: a Linear computes in f16 and returns f16; its gradients reach the f32 weights in f32, near the f32 ones', async () => {
    T.manualSeed(5);
    const layer = new Linear(12, 7);
    const norm = new LayerNorm(7);
    const x = toTensor(randn([5, 12], 2));
    const run = async (dtype: 'f32' | 'f16') => {
      const y = autocast(dtype, () => {
        assert.equal(computeDType(), dtype);
        return layer.forward(x, 'quickgelu');
      });
      assert.equal(y.dtype, dtype);
      // Layer norm keeps its input's dtype and its statistics in f32.
      const z = norm.forward(T.cast(y, 'f32'));
      T.backward(T.sum(T.mul(z, z)));
      const grads = [layer.weight.grad!, layer.bias!.grad!];
      assert.equal(grads.map((g) => g.dtype), ['f32', 'f32']);
      const values = await Promise.all(grads.map((g) => g.data()));
      layer.zeroGrad();
      norm.zeroGrad();
      for (const t of [y, z]) t.dispose();
      return values;
    };
    assert.equal(computeDType(), 'f32', 'the policy is restored after autocast');
    const [half, full] = [await run('f16'), await run('f32')];
    assertClose(half[0], full[0], 'dW', { atol: 2e-2, rtol: 2e-2 });
    assertClose(half[1], full[1], 'db', { atol: 2e-2, rtol: 2e-2 });
    for (const t of [x, ...layer.parameters(), ...norm.parameters()]) t.dispose();
  });

  // f16 carries 11 significant bits (relative rounding 2⁻¹¹ ≈ 5e-4 per operation); the tolerances are
  // HALF_TOLERANCE (1e-2 for features, logits and the loss, 5e-2 for gradients).
  for (const precision of ['f16', 'amp'] as const) {
    test(`parity in ${precision} with openai/CLIP's f32 outputs: vit_tiny (features, logits, loss, every gradient)`, async () => {
      const [weights, io] = [`${FIXTURES}/vit_tiny.safetensors`, `${FIXTURES}/vit_tiny.io.safetensors`];
      const r = await parity(readSafetensors(weights), readSafetensors(io), weights, io, precision);
      assert.ok(r.features <= HALF_TOLERANCE.features, `features ${r.features}`);
      assert.ok(r.features > 1e-5, `features ${r.features}: f16 rounding must show (was f16 used at all?)`);
      assert.ok(r.logits <= HALF_TOLERANCE.logits, `logits ${r.logits}`);
      assert.ok(r.loss <= HALF_TOLERANCE.loss, `loss ${r.loss}`);
      assert.ok(r.grads <= HALF_TOLERANCE.grads, `grads ${r.grads} (${r.worst_grad})`);
    });
  }

  test('parity in f16 with openai/CLIP: rn_tiny features, logits and loss (its batch-normed vision gradients are not f16-stable)', async () => {
    // rn_tiny normalises 16 values per channel in layer4 (batch 4 at 2×2): rounding only its weights to f16 and
    // computing in f32 already moves layer4's reference gradients by 35%, so those measure conditioning, not
    // arithmetic. Its text tower's gradients are compared.
    const [weights, io] = [`${FIXTURES}/rn_tiny.safetensors`, `${FIXTURES}/rn_tiny.io.safetensors`];
    const r = await parity(readSafetensors(weights), readSafetensors(io), weights, io, 'f16');
    assert.ok(r.features <= HALF_TOLERANCE.features && r.features > 1e-5, `features ${r.features}`);
    assert.ok(r.logits <= HALF_TOLERANCE.logits, `logits ${r.logits}`);
    assert.ok(r.loss <= HALF_TOLERANCE.loss, `loss ${r.loss}`);
    const file = readSafetensors(io);
    const model = clipFromSafetensors(readSafetensors(weights), weights);
    model.train();
    const images = T.Tensor.from(file.tensors.get('images')!.data, file.tensors.get('images')!.shape);
    const tokens = T.Tensor.from(Int32Array.from(file.tensors.get('tokens')!.data), file.tensors.get('tokens')!.shape, 'i32');
    const scale = 256;
    autocast('f16', () => lossAndGradients(model, images, tokens, 1, scale)).dispose();
    for (const [name, p] of model.namedParameters()) {
      if (name.startsWith('visual.')) continue;
      const want = file.tensors.get(`grad.${name}`)!.data;
      const got = Float32Array.from(await p.grad!.data(), (v) => v / scale);
      const peak = Math.max(...Array.from(want, Math.abs));
      assertClose(got, want, name, { atol: HALF_TOLERANCE.grads * peak, rtol: 0 });
    }
    for (const t of [images, tokens]) t.dispose();
    model.dispose();
  });

  test('CLIP.half(): f16 weights (norms and logit scale stay f32) take about half the bytes, take no gradient, and compute in f16', async () => {
    const config = { ...TINY_CONFIG, vocabSize: 300, transformerWidth: 64, visionWidth: 64 };
    T.manualSeed(7);
    const model = new CLIP(config);
    const bytes = (m: CLIP) => m.parameters().reduce((n, p) => n + p.size * (p.dtype === 'f16' ? 2 : 4), 0);
    const before = bytes(model);
    const liveBefore = T.memory().liveBytes;
    const images = T.randNormal([3, 3, 16, 16]);
    const full = await T.noGrad(() => model.encodeImage(images)).data();
    model.eval();
    model.half();
    assert.ok(bytes(model) < 0.52 * before, `${bytes(model)} of ${before} bytes`);
    assert.ok(T.memory().liveBytes < liveBefore - 0.45 * before, 'the f32 storage is released');
    const dtypes = Object.fromEntries(model.namedParameters().map(([k, p]) => [k, p.dtype]));
    assert.equal([dtypes.logit_scale, dtypes['visual.ln_pre.weight'], dtypes['ln_final.bias'], dtypes['visual.conv1.weight'], dtypes['token_embedding.weight']], ['f32', 'f32', 'f32', 'f16', 'f16']);
    assert.ok(model.namedParameters().every(([, p]) => p.requiresGrad === (p.dtype === 'f32')));
    const got = T.noGrad(() => model.encodeImage(images));
    assert.equal(got.dtype, 'f16');
    assertClose(await got.data(), full, 'image features of the f16 model', { atol: 2e-2, rtol: 2e-2 });
    // Saved, the f16 weights are F16 in the file; loaded back as f16 they give the same features bit for bit.
    const path = join(dir, 'half.safetensors');
    await saveClip(path, model);
    const file = readSafetensors(path);
    assert.equal([file.tensors.get('visual.conv1.weight')!.fileDtype, file.tensors.get('visual.ln_pre.weight')!.fileDtype], ['F16', 'F32']);
    const again = loadClip(path, { precision: 'f16' });
    const same = T.noGrad(() => again.encodeImage(images));
    assertClose(await same.data(), await got.data(), 'reloaded', { atol: 0, rtol: 0 });
    for (const t of [images, got, same]) t.dispose();
    model.dispose();
    again.dispose();
  });

  test('trainStepAmp: an overflowing step is skipped (weights unchanged, scale halved); the next one updates in f32', async () => {
    T.manualSeed(9);
    const model = new CLIP({ ...TINY_CONFIG, vocabSize: 300 });
    model.train();
    const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
    const scaler = new GradScaler({ initScale: 2 ** 100 }); // loss × 2¹⁰⁰ overflows f16 at once
    const images = T.randNormal([4, 3, 16, 16]);
    const tokens = T.Tensor.from(Int32Array.from({ length: 48 }, (_, i) => (i % 12 === 11 ? 299 : (i * 7) % 250)), [4, 12], 'i32');
    const w0 = await model.textProjection.data();
    const first = await trainStepAmp(model, optimizer, scaler, images, tokens);
    assert.equal([first.skipped, scaler.scale], [true, 2 ** 99]);
    assert.ok(Number.isFinite(await first.loss.item()), 'the loss itself is f32 and finite');
    assertClose(await model.textProjection.data(), w0, 'unchanged after the skipped step', { atol: 0, rtol: 0 });
    assert.ok(model.parameters().every((p) => p.grad === null), 'the overflowed gradients are dropped');
    scaler.load({ scale: 1024, goodSteps: 0 });
    const second = await trainStepAmp(model, optimizer, scaler, images, tokens);
    assert.equal(second.skipped, false);
    const w1 = await model.textProjection.data();
    assert.ok(Array.from(w1).some((v, i) => v !== w0[i]), 'updated');
    assert.ok(model.parameters().every((p) => p.dtype === 'f32'), 'master weights stay f32');
    for (const t of [first.loss, second.loss, images, tokens]) t.dispose();
    model.dispose();
    optimizer.dispose();
  });

  test('CapturedAmpStep equals trainStepAmp bit for bit: replayed halves, a growing scale, a skipped step, a scale set by hand', async () => {
    const make = () => {
      T.manualSeed(4);
      const model = new CLIP({ ...TINY_CONFIG, vocabSize: 300 });
      const optimizer = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.1 });
      return { model, optimizer, scaler: new GradScaler({ initScale: 1024, growthInterval: 2 }) };
    };
    const [eager, captured] = [make(), make()];
    const step = new CapturedAmpStep(captured.model, captured.optimizer, captured.scaler, { clipGrad: 1 });
    const bits = async (t: T.Tensor) => Array.from(new Uint32Array((await t.data()).buffer.slice(0)));
    for (let i = 0; i < 9; i++) {
      if (i === 5) for (const side of [eager, captured]) side.scaler.load({ scale: 2 ** 100, goodSteps: 0 }); // overflows: skipped
      if (i === 6) for (const side of [eager, captured]) side.scaler.load({ scale: 512, goodSteps: 1 });
      const gen = new T.Generator(70 + i);
      const images = T.randNormal([4, 3, 16, 16], 0, 1, gen);
      const tokens = T.Tensor.from(Int32Array.from({ length: 48 }, (_, k) => (k % 12 === 11 ? 299 : (k * 7 + i) % 250)), [4, 12], 'i32');
      const a = await trainStepAmp(eager.model, eager.optimizer, eager.scaler, images, tokens, { clipGrad: 1 });
      const b = await step.run(images, tokens);
      assert.is(b.skipped, a.skipped, `step ${i} skipped alike`);
      assert.is(b.skipped, i === 5, `only step 5 overflows`);
      assert.is(await b.loss.item(), await a.loss.item(), `loss of step ${i}`);
      assert.is(captured.scaler.scale, eager.scaler.scale, `scale after step ${i}`);
      for (const t of [a.loss, b.loss, images, tokens]) t.dispose();
      if (i === 3) await step.settled();
    }
    assert.is(step.refusal, null);
    assert.ok(step.replays.gradients >= 5 && step.replays.update >= 4, `replayed: ${JSON.stringify(step.replays)}`);
    assert.is(captured.optimizer.stepCount, eager.optimizer.stepCount);
    assert.is(captured.optimizer.stepCount, 8, 'the skipped step does not count');
    const named = new Map(eager.model.namedParameters());
    for (const [name, p] of captured.model.namedParameters()) assert.equal(await bits(p), await bits(named.get(name)!), name);
    step.dispose();
    for (const side of [eager, captured]) {
      side.model.dispose();
      side.optimizer.dispose();
    }
  });

  test('GPU memory stays flat in amp: training steps with evaluations and saves, and a half model evaluated again and again', async () => {
    const out = join(dir, 'amp-flat');
    await train(tinyRun(out, 24, { precision: 'amp', saveEvery: 4, evalEvery: 2 }));
    const live = metricsOf(out).filter((r) => 'loss' in r).map((r) => r.gpu_live_bytes);
    // From the second evaluation on (the first compiles and pools its buffers), every step ends at the same bytes.
    assert.ok(live.slice(4).every((b) => b === live[4]), `live bytes per step: ${live.join(', ')}`);
    const model = loadClip(join(out, 'model.safetensors'), { precision: 'f16' });
    const tokenizer = readTokenizer(join(out, 'vocab.txt.gz'), model.config.vocabSize);
    const data = builtinSource('scenes', 3);
    const after: number[] = [];
    for (let i = 0; i < 3; i++) {
      await evaluateClip(model, tokenizer, data);
      after.push(T.memory().liveBytes);
    }
    assert.ok(after.every((b) => b === after[0]), `live bytes after each evaluation: ${after.join(', ')}`);
    model.dispose();
  });

  test('train --precision amp: the loss falls, the loss scale is logged every step and resumes from the checkpoint', async () => {
    const out = join(dir, 'amp-run');
    await train(tinyRun(out, 4, { precision: 'amp' }));
    const rows = metricsOf(out).filter((r) => typeof r.loss === 'number');
    assert.equal(rows.map((r) => r.loss_scale), [65536, 65536, 65536, 65536]);
    assert.ok(rows.every((r) => Number.isFinite(r.loss)));
    const checkpoint = join(out, 'checkpoint.safetensors');
    assert.equal((checkpointInfo(readSafetensors(checkpoint), checkpoint).extra as { lossScale?: unknown }).lossScale, { scale: 65536, goodSteps: 4 });
    await train(tinyRun(out, 6, { precision: 'amp', resume: true, config: undefined }));
    const resumed = metricsOf(out).filter((r) => typeof r.loss === 'number');
    assert.equal(resumed.length, 6);
    assert.equal(resumed.map((r) => r.step), [1, 2, 3, 4, 5, 6]);
    await assertThrows(() => train(tinyRun(join(dir, 'bad'), 1, { precision: 'bf16' as 'amp' })), RangeError, /--precision must be fp32 or amp, got 'bf16'/);
  });
}

test.run();
