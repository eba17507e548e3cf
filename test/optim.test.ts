// Optimizers against float64 reimplementations of torch.optim's formulas; clipping; schedules; state dicts.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { AdamW, SGD, clipGradNorm, constantWithWarmup, cosineWithWarmup, decayGroups, type AdamWOptions, type ParamGroup } from '../nn/optim.ts';
import { multiTensorLimit } from '../kernels/optimizer.ts';
import { getEngine } from '../core/engine.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Linear, ReLU, Sequential } from '../nn/layers.ts';
import { loadCheckpoint, saveCheckpoint } from '../nn/io/checkpoint.ts';
import { assertClose, randn, suite, toTensor } from './harness.ts';

const test = suite('optim');

/** Runs `steps` updates with fixed random gradients per step; returns the parameter after each step. */
async function run(make: (p: T.Tensor[]) => { step(): void; dispose(): void }, shapes: number[][], steps: number, seed: number) {
  const init = shapes.map((s, i) => randn(s, seed + i));
  const params = init.map((x) => T.param(toTensor(x)));
  const opt = make(params);
  const grads = Array.from({ length: steps }, (_, k) => shapes.map((s, i) => randn(s, seed + 100 * (k + 1) + i)));
  const history: Float32Array[][] = [];
  for (let k = 0; k < steps; k++) {
    params.forEach((p, i) => {
      p.grad?.dispose();
      p.grad = T.keep(toTensor(grads[k][i]));
    });
    opt.step();
    history.push(await Promise.all(params.map(async (p) => (await p.data()) as Float32Array)));
  }
  opt.dispose();
  params.forEach((p) => p.dispose());
  return { init, grads, history };
}

test('AdamW matches torch.optim.AdamW over 5 steps (vec4 and scalar tensors)', async () => {
  const h = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
  const shapes = [[4, 8], [7], [3, 5], [16], [2, 2, 2], [9]]; // more tensors than one multi-tensor dispatch takes
  const { init, grads, history } = await run((p) => new AdamW(p, h), shapes, 5, 40);
  init.forEach((x0, i) => {
    const p = Float64Array.from(x0.data);
    const m = new Float64Array(p.length);
    const v = new Float64Array(p.length);
    for (let t = 1; t <= 5; t++) {
      const g = grads[t - 1][i].data;
      const bc1 = 1 - h.beta1 ** t;
      const bc2 = 1 - h.beta2 ** t;
      for (let j = 0; j < p.length; j++) {
        p[j] *= 1 - h.lr * h.weightDecay;
        m[j] = h.beta1 * m[j] + (1 - h.beta1) * g[j];
        v[j] = h.beta2 * v[j] + (1 - h.beta2) * g[j] * g[j];
        p[j] -= (h.lr / bc1) * (m[j] / (Math.sqrt(v[j]) / Math.sqrt(bc2) + h.eps));
      }
      assertClose(history[t - 1][i], p, `param ${i} step ${t}`, { atol: 1e-6, rtol: 1e-5 });
    }
  });
});

/** AdamW updating one tensor per dispatch (the path the multi-tensor update must equal). */
class PerTensorAdamW extends AdamW {
  protected override stepGroup(group: ParamGroup<AdamWOptions>): void {
    for (const p of group.params) if (p.grad) this.update(p, p.grad, group.options);
  }
}

test('multi-tensor AdamW equals the per-tensor update bit for bit, in a few dispatches (vec4 and scalar, two groups, a missing gradient)', async () => {
  const shapes = [[4, 8], [7], [3, 5], [16], [2, 2, 2], [9], [1], [6, 4], [5], [8], [12, 3]];
  const make = (Opt: typeof AdamW) => (p: T.Tensor[]) =>
    new Opt([{ params: p.slice(0, 7) }, { params: p.slice(7), options: { weightDecay: 0 } }], { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 });
  const [multi, single] = [await run(make(AdamW), shapes, 4, 70), await run(make(PerTensorAdamW), shapes, 4, 70)];
  const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer.slice(0)));
  multi.history.forEach((step, k) => step.forEach((x, i) => assert.equal(bits(x), bits(single.history[k][i]), `param ${i} after step ${k + 1}`)));
  // Dispatches: a few per group, not one per tensor; a parameter without a gradient is left alone.
  const params = shapes.map((s, i) => T.param(toTensor(randn(s, i))));
  const optimizer = make(AdamW)(params);
  params.forEach((p, i) => (p.grad = i === 3 ? null : T.keep(T.onesLike(p))));
  const before = await params[3].data();
  const engine = getEngine();
  optimizer.step(); // the first step makes the flat moments
  engine.startRecording();
  optimizer.step();
  const dispatches = engine.stopRecording().commands.filter((c) => c.kind === 'dispatch').length;
  // Per group, the vec4-able tensors and the others apart: group 1 has 2 and 4 (one lacks a gradient), group 2 has 3 and 1.
  const limit = multiTensorLimit();
  const expected = [2, 4, 3, 1].reduce((n, k) => n + Math.ceil(k / limit), 0);
  assert.is(dispatches, expected, `${dispatches} dispatches for 10 gradients, ${limit} per dispatch`);
  assert.equal(await params[3].data(), before, 'no gradient, no update');
  const { tensors } = optimizer.stateDict();
  assert.is(tensors.size, 20, 'state for the ten updated parameters only');
  assert.equal([...tensors.get('state.0.exp_avg')!.shape], [4, 8]);
  optimizer.dispose();
  for (const p of params) p.dispose();
});

test('SGD with momentum, dampening, Nesterov and weight decay matches torch.optim.SGD', async () => {
  for (const h of [
    { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false },
    { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0.01, nesterov: false },
    { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0.001, nesterov: true },
  ]) {
    const { init, grads, history } = await run((p) => new SGD(p, h), [[3, 4], [5]], 4, 60);
    init.forEach((x0, i) => {
      const p = Float64Array.from(x0.data);
      const buf = new Float64Array(p.length);
      for (let t = 1; t <= 4; t++) {
        const g = grads[t - 1][i].data;
        for (let j = 0; j < p.length; j++) {
          let d = g[j] + h.weightDecay * p[j];
          if (h.momentum) {
            buf[j] = t === 1 ? d : h.momentum * buf[j] + (1 - h.dampening) * d;
            d = h.nesterov ? d + h.momentum * buf[j] : buf[j];
          }
          p[j] -= h.lr * d;
        }
        assertClose(history[t - 1][i], p, `SGD ${JSON.stringify(h)} param ${i} step ${t}`, { atol: 1e-6, rtol: 1e-5 });
      }
    });
  }
});

test('parameter groups get their own hyperparameters; decayGroups follows CLIP', async () => {
  const a = T.param(T.ones([2, 2]));
  const b = T.param(T.ones([2]));
  const opt = new AdamW([{ params: [a] }, { params: [b], options: { weightDecay: 0 } }], { lr: 0.1, weightDecay: 0.5 });
  a.grad = T.keep(T.zeros([2, 2]));
  b.grad = T.keep(T.zeros([2]));
  opt.step();
  assertClose(await a.data(), [0.95, 0.95, 0.95, 0.95], 'decayed', { atol: 1e-6 });
  assertClose(await b.data(), [1, 1], 'not decayed', { atol: 1e-6 });
  const { decay, noDecay } = decayGroups([['visual.conv1.weight', a], ['ln_final.bias', b], ['positional_embedding', T.ones([3, 2])], ['logit_scale', T.ones([])]]);
  assert.equal([decay.length, noDecay.length], [1, 3]);
  for (const t of [a, b]) t.dispose();
  opt.dispose();
});

test('optimizer state round-trips through stateDict', async () => {
  const p = T.param(toTensor(randn([8], 1)));
  const opt = new AdamW([p], { lr: 0.01 });
  p.grad = T.keep(toTensor(randn([8], 2)));
  opt.step();
  const saved = opt.stateDict();
  const q = T.param(T.contiguous(T.add(p, 0)));
  const restored = new AdamW([q], { lr: 0.01 });
  restored.loadStateDict(saved);
  q.grad = T.keep(toTensor(randn([8], 3)));
  p.grad.dispose();
  p.grad = T.keep(toTensor(randn([8], 3)));
  opt.step();
  restored.step();
  assert.is(restored.stepCount, 2);
  assertClose(await q.data(), await p.data(), 'resumed update', { atol: 0, rtol: 0 });
  for (const t of [p, q]) t.dispose();
  opt.dispose();
  restored.dispose();
});

test('clipGradNorm scales by the global norm without a readback', async () => {
  const a = T.param(T.zeros([2]));
  const b = T.param(T.zeros([2]));
  a.grad = T.keep(T.Tensor.from([3, 0]));
  b.grad = T.keep(T.Tensor.from([0, 4]));
  const norm = clipGradNorm([a, b], 1);
  assertClose([await norm.item()], [5], 'norm', { atol: 1e-6 });
  assertClose([...(await a.grad.data()), ...(await b.grad.data())], [0.6, 0, 0, 0.8], 'clipped', { atol: 1e-6 });
  const n2 = clipGradNorm([a, b], 10);
  assertClose([...(await a.grad.data())], [0.6, 0], 'below the limit: unchanged', { atol: 1e-6 });
  for (const t of [a, b, norm, n2]) t.dispose();
});

test('schedules: linear warmup, then cosine or constant', () => {
  const cos = cosineWithWarmup({ baseLr: 1, warmup: 10, total: 110 });
  assertClose([cos(0), cos(9), cos(10), cos(60), cos(110), cos(500)], [0.1, 1, 1, 0.5, 0, 0], 'cosine', { atol: 1e-12 });
  const withMin = cosineWithWarmup({ baseLr: 1, warmup: 0, total: 100, minLr: 0.1 });
  assertClose([withMin(0), withMin(100)], [1, 0.1], 'cosine floor', { atol: 1e-12 });
  const c = constantWithWarmup({ baseLr: 2, warmup: 4 });
  assertClose([c(0), c(3), c(50)], [0.5, 2, 2], 'constant', { atol: 1e-12 });
});

test('a checkpoint resumes training exactly: same losses as an uninterrupted run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
  const path = join(dir, 'run.safetensors');
  const data = toTensor(randn([16, 6], 70));
  const labels = T.Tensor.from(Int32Array.from({ length: 16 }, (_, i) => i % 3));
  const makeRun = () => {
    T.manualSeed(9);
    const net = new Sequential(new Linear(6, 8), new ReLU(), new Linear(8, 3));
    const opt = new AdamW(net.parameters(), { lr: 0.05 });
    return { net, opt };
  };
  const step = async ({ net, opt }: ReturnType<typeof makeRun>) => {
    // Noise from the default generator, so the RNG state must be restored too.
    const loss = T.tidy(() => T.crossEntropy(net.forward(T.add(data, T.randNormal([16, 6], 0, 0.1))), labels));
    T.backward(loss);
    opt.step();
    opt.zeroGrad();
    const v = await loss.item();
    loss.dispose();
    return v;
  };
  const straight = makeRun();
  const expected: number[] = [];
  for (let i = 0; i < 6; i++) expected.push(await step(straight));

  const first = makeRun();
  for (let i = 0; i < 3; i++) await step(first);
  await saveCheckpoint(path, first.net, first.opt, { step: 3, rng: T.defaultGenerator.state(), extra: { note: 'test' } });
  T.manualSeed(12345); // disturb the generator: the checkpoint must restore it
  const resumed = makeRun();
  const info = loadCheckpoint(path, resumed.net, resumed.opt);
  assert.equal([info.step, info.extra], [3, { note: 'test' }]);
  const after: number[] = [];
  for (let i = 0; i < 3; i++) after.push(await step(resumed));
  assert.equal(after, expected.slice(3));
  for (const r of [straight, first, resumed]) {
    r.net.dispose();
    r.opt.dispose();
  }
});

test.run();
