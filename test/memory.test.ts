// GPU memory: a training loop's live bytes stay flat, the pool serves repeat allocations (the same buffers to a
// repeated step, so its bind groups are reused), tidy frees what it should, and no pipeline is compiled again for
// new shapes of a known kernel.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { CONFIGS } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep } from '../clip/step.ts';
import { AdamW } from '../nn/optim.ts';
import { suite } from './harness.ts';

const test = suite('memory');

function mlpStep(w1: T.Tensor, b1: T.Tensor, w2: T.Tensor, x: T.Tensor, labels: T.Tensor, lr: number): T.Tensor {
  return T.tidy(() => {
    const h = T.matmul(x, w1, { bias: b1, activation: 'gelu' });
    const loss = T.crossEntropy(T.matmul(h, w2), labels);
    T.backward(loss);
    T.noGrad(() => {
      for (const p of [w1, b1, w2]) {
        T.assign(p, T.sub(p, T.mul(p.grad!, lr)));
        p.grad!.dispose();
        p.grad = null;
      }
    });
    return loss;
  });
}

test('live bytes stay flat over 200 forward + backward + update steps', async () => {
  T.manualSeed(1);
  const w1 = T.param(T.mul(T.randNormal([33, 64]), 0.2));
  const b1 = T.param(T.zeros([64]));
  const w2 = T.param(T.mul(T.randNormal([64, 10]), 0.2));
  const x = T.keep(T.randNormal([57, 33]));
  const labels = T.keep(T.Tensor.from(Int32Array.from({ length: 57 }, (_, i) => i % 10)));
  const first = mlpStep(w1, b1, w2, x, labels, 0.1);
  await first.item();
  first.dispose();
  const after1 = T.memory();
  const live: number[] = [];
  for (let step = 0; step < 200; step++) {
    const loss = mlpStep(w1, b1, w2, x, labels, 0.1);
    if (step % 50 === 49) await loss.item();
    loss.dispose();
    live.push(T.memory().liveBytes);
  }
  const end = T.memory();
  assert.ok(live.every((b) => b === live[0]), `live bytes drifted: ${[...new Set(live)].join(', ')}`);
  assert.is(end.liveBytes, after1.liveBytes, 'live bytes after 200 steps equal those after the first');
  assert.is(end.allocations, after1.allocations, 'every later step is served from the pool');
  assert.ok(end.reuses > after1.reuses);
  for (const t of [w1, b1, w2, x, labels]) t.dispose();
});

test('a repeated eager training step gets the same buffers each time, so it makes no new bind groups (ViT-tiny CLIP step)', async () => {
  T.manualSeed(2);
  const model = new CLIP({ ...CONFIGS['ViT-tiny'], vocabSize: 100 });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
  const images = T.keep(T.randNormal([6, 3, 32, 32]));
  const tokens = T.keep(T.Tensor.from(Int32Array.from({ length: 6 * 16 }, (_, k) => (k % 16 === 5 ? 99 : k % 16 > 5 ? 0 : 1 + (k % 97))), [6, 16], 'i32'));
  // Warm-up: the optimizer's state appears and the pool grows to what the step needs.
  for (let i = 0; i < 5; i++) {
    const loss = trainStep(model, optimizer, images, tokens);
    await loss.item();
    loss.dispose();
  }
  const made: number[] = [];
  for (let i = 0; i < 6; i++) {
    const before = T.memory().bindGroups;
    const loss = trainStep(model, optimizer, images, tokens);
    await loss.item();
    loss.dispose();
    made.push(T.memory().bindGroups - before);
  }
  assert.equal(made, [0, 0, 0, 0, 0, 0], `bind groups made per step: ${made}`);
  for (const t of [model, optimizer, images, tokens]) t.dispose();
});

test('tidy disposes intermediates, keeps results and kept tensors, and nests', () => {
  const before = T.memory().liveBytes;
  let inner: T.Tensor | undefined;
  const { a, b } = T.tidy(() => {
    const t = T.ones([100]);
    inner = T.tidy(() => T.add(t, T.mul(t, 2)));
    const kept = T.keep(T.zeros([10]));
    T.exp(t);
    return { a: inner, b: [kept] };
  });
  assert.is(a, inner);
  assert.is(a.isDisposed, false);
  assert.is(b[0].isDisposed, false);
  a.dispose();
  b[0].dispose();
  assert.is(T.memory().liveBytes, before);
});

test('releasePooled destroys pooled buffers and later work allocates afresh', async () => {
  T.tidy(() => T.add(T.ones([5000]), 1)).dispose();
  assert.ok(T.memory().pooledBytes > 0);
  await T.releasePooled();
  assert.is(T.memory().pooledBytes, 0);
  assert.is(await T.tidy(() => T.sum(T.ones([7]))).item(), 7);
});

test('new shapes of a known kernel compile no new pipeline', async () => {
  const shapes = [[3, 5], [17, 33], [129, 7]];
  const run = (i: number) => T.tidy(() => {
    const [m, n] = shapes[i];
    const a = T.randNormal([m, n]);
    const w = T.randNormal([n, m]);
    return T.sum(T.softmax(T.add(T.matmul(a, w), 1)));
  });
  (await run(0).item());
  const compiled = T.memory().pipelinesCompiled;
  for (let i = 1; i < shapes.length; i++) await run(i).item();
  assert.is(T.memory().pipelinesCompiled, compiled);
});

test.run();
