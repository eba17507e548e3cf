// The layer library: PyTorch names and shapes, state dicts, layers and attention against float64 references,
// batch-norm running statistics, and end-to-end learning of a small CNN and a small Transformer.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { Module, StateDictError } from '../nn/module.ts';
import { BatchNorm2d, Conv2d, Embedding, LayerNorm, Linear, Sequential, ReLU, AvgPool2d } from '../nn/layers.ts';
import { MultiheadAttention, causalMask } from '../nn/attention.ts';
import { AdamW } from '../nn/optim.ts';
import { assertClose, assertTensorClose, assertThrows, randn, suite, toNd, toTensor } from './harness.ts';

const test = suite('nn');

class Block extends Module {
  readonly fc = this.child('fc', new Linear(3, 4));
  readonly ln = this.child('ln', new LayerNorm(4));
  readonly scale = this.param('scale', T.ones([1]));
}

test('parameter names and state dict keys follow PyTorch', () => {
  const net = new Sequential(new Linear(3, 4), new ReLU(), new Linear(4, 2, { bias: false }));
  assert.equal(net.namedParameters().map(([k, p]) => `${k}:${p.shape}`), ['0.weight:4,3', '0.bias:4', '2.weight:2,4']);
  const b = new Block();
  assert.equal([...b.stateDict().keys()], ['scale', 'fc.weight', 'fc.bias', 'ln.weight', 'ln.bias']);
  const bn = new BatchNorm2d(5);
  assert.equal([...bn.stateDict().keys()], ['weight', 'bias', 'running_mean', 'running_var']);
  assert.equal(new MultiheadAttention(8, 2).namedParameters().map(([k]) => k), ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']);
  for (const m of [net, b, bn]) m.dispose();
});

test('loadStateDict copies by name and lists every problem', async () => {
  const a = new Block();
  const b = new Block();
  b.loadStateDict(a.stateDict());
  assertClose(await b.fc.weight.data(), await a.fc.weight.data(), 'copied weight', { atol: 0, rtol: 0 });
  const bad = new Map(a.stateDict());
  bad.delete('ln.bias');
  bad.set('extra.weight', T.ones([2]));
  bad.set('fc.weight', T.ones([5, 3]));
  await assertThrows(() => b.loadStateDict(bad), StateDictError, /missing keys: ln\.bias/, /unexpected keys: extra\.weight/, /fc\.weight: checkpoint \[5, 3\] vs model \[4, 3\]/);
  bad.set('fc.weight', a.fc.weight);
  const { missing, unexpected } = b.loadStateDict(bad, { strict: false });
  assert.equal([missing, unexpected], [['ln.bias'], ['extra.weight']]);
  a.dispose();
  b.dispose();
});

test('Linear, Embedding, LayerNorm and Conv2d against references', async () => {
  const lin = new Linear(33, 7);
  const x = randn([5, 33], 1);
  const [w, b] = [await toNd(lin.weight), await toNd(lin.bias!)];
  await assertTensorClose(lin.forward(toTensor(x)), R.zip([R.matmul(x, R.permute(w, [1, 0])), b], (p, q) => p + q), 'linear', { atol: 1e-5, rtol: 1e-4 });
  const bound = 1 / Math.sqrt(33);
  assert.ok(w.data.every((v) => Math.abs(v) <= bound) && b.data.every((v) => Math.abs(v) <= bound), 'PyTorch default init bounds');
  const emb = new Embedding(11, 6);
  const ids = Int32Array.from([3, 10, 0, 3]);
  await assertTensorClose(emb.forward(T.Tensor.from(ids, [2, 2])), R.reshape(R.indexSelect(await toNd(emb.weight), 0, ids), [2, 2, 6]), 'embedding');
  const ln = new LayerNorm(33, 1e-6);
  await assertTensorClose(ln.forward(toTensor(x)), R.layerNorm(x, R.Nd.from(new Array(33).fill(1), [33]), R.Nd.from(new Array(33).fill(0), [33]), 1e-6), 'layerNorm', { atol: 1e-5, rtol: 1e-4 });
  const conv = new Conv2d(3, 4, 3, { stride: 2, padding: 1 });
  const img = randn([2, 3, 9, 9], 2);
  await assertTensorClose(conv.forward(toTensor(img)), R.conv2d(img, await toNd(conv.weight), 2, 1, await toNd(conv.bias!)), 'conv2d', { atol: 1e-5, rtol: 1e-4 });
  for (const m of [lin, emb, ln, conv]) m.dispose();
});

test('BatchNorm2d updates running statistics like PyTorch and uses them in eval', async () => {
  const bn = new BatchNorm2d(3, 1e-5, 0.1);
  const x = randn([4, 3, 5, 5], 3, 2);
  bn.forward(toTensor(x)).dispose();
  const M = 4 * 25;
  const perChannel = (f: (vals: number[]) => number) =>
    [0, 1, 2].map((c) => f(Array.from({ length: 4 * 25 }, (_, k) => x.data[(Math.floor(k / 25) * 3 + c) * 25 + (k % 25)])));
  const mean = perChannel((v) => v.reduce((a, b) => a + b, 0) / M);
  const unbiased = perChannel((v) => {
    const m = v.reduce((a, b) => a + b, 0) / M;
    return v.reduce((a, b) => a + (b - m) ** 2, 0) / (M - 1);
  });
  assertClose(await bn.runningMean.data(), mean.map((m) => 0.1 * m), 'running mean', { atol: 1e-6, rtol: 1e-5 });
  assertClose(await bn.runningVar.data(), unbiased.map((v) => 0.9 + 0.1 * v), 'running var', { atol: 1e-6, rtol: 1e-5 });
  bn.eval();
  const y = await bn.forward(toTensor(x)).data();
  const rm = await bn.runningMean.data();
  const rv = await bn.runningVar.data();
  const want = Array.from(x.data, (v, i) => {
    const c = Math.floor(i / 25) % 3;
    return (v - rm[c]) / Math.sqrt(rv[c] + 1e-5);
  });
  assertClose(y, want, 'eval output', { atol: 1e-5, rtol: 1e-5 });
  bn.dispose();
});

/** PyTorch's multi_head_attention_forward in float64, on [B, L, E] inputs. */
function mhaRef(q: R.Nd, k: R.Nd, v: R.Nd, Win: R.Nd, bin: R.Nd, Wout: R.Nd, bout: R.Nd, heads: number, mask?: R.Nd): R.Nd {
  const E = q.shape[2];
  const Dh = E / heads;
  const proj = (x: R.Nd, i: number) => R.zip([R.matmul(x, R.permute(R.slice(Win, [i * E, 0], [(i + 1) * E, E]), [1, 0])), R.slice(bin, [i * E], [(i + 1) * E])], (a, b) => a + b);
  const split = (x: R.Nd) => R.permute(R.reshape(x, [x.shape[0], x.shape[1], heads, Dh]), [0, 2, 1, 3]);
  const [Q, K, V] = [split(proj(q, 0)), split(proj(k, 1)), split(proj(v, 2))];
  let scores = R.map(R.matmul(Q, R.permute(K, [0, 1, 3, 2])), (s) => s / Math.sqrt(Dh));
  if (mask) scores = R.zip([scores, mask], (a, b) => a + b);
  const out = R.matmul(R.softmax(scores), V);
  const merged = R.reshape(R.permute(out, [0, 2, 1, 3]), [q.shape[0], q.shape[1], E]);
  return R.zip([R.matmul(merged, R.permute(Wout, [1, 0])), bout], (a, b) => a + b);
}

test('MultiheadAttention matches PyTorch’s formula for 1, 2 and 3 heads, with and without a causal mask, fused and unfused', async () => {
  for (const heads of [1, 2, 3]) {
    const E = 12;
    const mha = new MultiheadAttention(E, heads);
    T.noGrad(() => T.tidy(() => T.assign(mha.inProjBias, T.randNormal([3 * E], 0, 0.5))));
    const [Win, bin, Wout, bout] = await Promise.all([mha.inProjWeight, mha.inProjBias, mha.outProj.weight, mha.outProj.bias!].map(toNd));
    const x = randn([2, 7, E], 10 + heads); // [B, L, E]
    const seqFirst = R.permute(x, [1, 0, 2]);
    for (const masked of [false, true]) {
      const mask = masked ? causalMask(7) : undefined;
      const maskNd = mask ? await toNd(mask) : undefined;
      const want = mhaRef(x, x, x, Win, bin, Wout, bout, heads, maskNd);
      // No mask: the fused kernel. An additive mask: the unfused path. causal: the fused kernel's flag.
      const got = mha.forward(toTensor(seqFirst), undefined, undefined, { attnMask: mask });
      await assertTensorClose(got, R.permute(want, [1, 0, 2]), `${heads} heads, mask ${masked}`, { atol: 1e-5, rtol: 1e-4 });
      if (masked) {
        const fused = mha.forward(toTensor(seqFirst), undefined, undefined, { causal: true });
        await assertTensorClose(fused, R.permute(want, [1, 0, 2]), `${heads} heads, causal flag`, { atol: 1e-5, rtol: 1e-4 });
      }
    }
    // Cross-attention with distinct key/value, batch-first.
    const bf = new MultiheadAttention(E, heads, true);
    bf.loadStateDict(mha.stateDict());
    const kv = randn([2, 5, E], 20 + heads);
    await assertTensorClose(bf.forward(toTensor(x), toTensor(kv), toTensor(kv)), mhaRef(x, kv, kv, Win, bin, Wout, bout, heads), `${heads} heads cross`, { atol: 1e-5, rtol: 1e-4 });
    mha.dispose();
    bf.dispose();
  }
});

test('wide heads (unfused): the causal flag equals the causal mask; the module frees its kept mask', async () => {
  const E = 80; // 2 heads of 40: wider than the fused kernels take
  const x = toTensor(randn([2, 6, E], 41));
  const mask = causalMask(6);
  const baseline = T.memory().liveBytes;
  const mha = new MultiheadAttention(E, 2, true);
  assert.ok(mha.headDim > T.FUSED_HEAD_DIM && !T.useFusedAttention(mha.headDim, true), '40-wide heads split over no subgroup: unfused');
  const run = async (options: { attnMask?: T.Tensor; causal?: boolean }) => {
    const y = mha.forward(x, undefined, undefined, options);
    const data = await y.data();
    y.dispose();
    return data;
  };
  const want = await run({ attnMask: mask });
  for (let i = 0; i < 2; i++) assertClose(await run({ causal: true }), want, `causal flag, call ${i}`, { atol: 1e-5, rtol: 1e-4 });
  mha.dispose();
  assert.is(T.memory().liveBytes, baseline);
  for (const t of [x, mask]) t.dispose();
});

test('gradients flow through attention to every parameter, fused and unfused (finite-difference spot check)', async () => {
  const mha = new MultiheadAttention(8, 2, true);
  const x = toTensor(randn([1, 4, 8], 30));
  const mask = causalMask(4);
  for (const options of [{ attnMask: mask }, { causal: true }]) {
    const loss = () => T.tidy(() => T.sum(T.mul(mha.forward(x, undefined, undefined, options), T.arange(0, 32, 1, 'f32').view([1, 4, 8]))));
    mha.zeroGrad();
    const l = loss();
    T.backward(l);
    l.dispose();
    for (const [name, p] of mha.namedParameters()) {
      const grad = await p.grad!.data();
      const host = await p.data();
      for (const i of [0, Math.floor(p.size / 2), p.size - 1]) {
        const h = 1e-2;
        const bump = async (delta: number) => {
          const copy = Float32Array.from(host);
          copy[i] += delta;
          T.noGrad(() => T.assign(p, T.Tensor.from(copy, p.shape)));
          const v = await T.noGrad(loss).item();
          return v;
        };
        const numeric = ((await bump(h)) - (await bump(-h))) / (2 * h);
        T.noGrad(() => T.assign(p, T.Tensor.from(host, p.shape)));
        assertClose([grad[i]], [numeric], `${options.causal ? 'fused' : 'masked'} ${name}[${i}]`, { atol: 2e-2, rtol: 2e-2 });
      }
    }
  }
  mha.dispose();
});

test('a small CNN learns a seeded image task', async () => {
  T.manualSeed(5);
  // Class 0: bright top half; class 1: bright bottom half; plus noise.
  const n = 64;
  const data = new Float32Array(n * 1 * 8 * 8);
  const labels = new Int32Array(n);
  const rand = (() => { let s = 7; return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32); })();
  for (let i = 0; i < n; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < 64; p++) data[i * 64 + p] = (Math.floor(p / 8) < 4 === (labels[i] === 0) ? 1 : 0) + 0.5 * (rand() - 0.5);
  }
  const x = T.keep(T.Tensor.from(data, [n, 1, 8, 8]));
  const y = T.keep(T.Tensor.from(labels));
  const net = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new AvgPool2d(2), new Conv2d(4, 4, 3, { padding: 1 }), new ReLU(), new AvgPool2d(4));
  const head = new Linear(4, 2);
  const opt = new AdamW([...net.parameters(), ...head.parameters()], { lr: 0.05, weightDecay: 0 });
  const losses: number[] = [];
  for (let step = 0; step < 60; step++) {
    const loss = T.tidy(() => T.crossEntropy(head.forward(T.reshape(net.forward(x), [n, 4])), y));
    T.backward(loss);
    opt.step();
    opt.zeroGrad();
    if (step === 0 || step === 59) losses.push(await loss.item());
    loss.dispose();
  }
  assert.ok(losses[1] < 0.1 && losses[0] > 0.5, `CNN loss ${losses[0]} → ${losses[1]} should fall below 0.1`);
  for (const t of [x, y]) t.dispose();
  net.dispose();
  head.dispose();
  opt.dispose();
});

test('a small Transformer learns to copy the token before each position', async () => {
  T.manualSeed(6);
  const [B, L, V, E] = [16, 6, 8, 16];
  const rand = (() => { let s = 3; return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32); })();
  const ids = Int32Array.from({ length: B * L }, () => Math.floor(rand() * V));
  const targets = Int32Array.from(ids, (_, i) => (i % L === 0 ? 0 : ids[i - 1]));
  const tokens = T.keep(T.Tensor.from(ids, [B, L]));
  const labels = T.keep(T.Tensor.from(targets));
  const emb = new Embedding(V, E);
  const pos = T.param(T.mul(T.randNormal([L, E]), 0.1));
  const ln = new LayerNorm(E);
  const attn = new MultiheadAttention(E, 2, true);
  const out = new Linear(E, V);
  const mask = T.keep(causalMask(L));
  const params = [...emb.parameters(), pos, ...ln.parameters(), ...attn.parameters(), ...out.parameters()];
  const opt = new AdamW(params, { lr: 0.02, weightDecay: 0 });
  let first = 0;
  let last = 0;
  for (let step = 0; step < 150; step++) {
    const loss = T.tidy(() => {
      const h = T.add(emb.forward(tokens), pos);
      const a = T.add(h, attn.forward(ln.forward(h), undefined, undefined, { attnMask: mask }));
      return T.crossEntropy(T.reshape(out.forward(a), [B * L, V]), labels);
    });
    T.backward(loss);
    opt.step();
    opt.zeroGrad();
    if (step === 0) first = await loss.item();
    if (step === 149) last = await loss.item();
    loss.dispose();
  }
  assert.ok(first > 1.5 && last < 0.3, `Transformer loss ${first} → ${last} should fall below 0.3`);
  for (const m of [emb, ln, attn, out]) m.dispose();
  for (const t of [pos, tokens, labels, mask]) t.dispose();
  opt.dispose();
});

test.run();
