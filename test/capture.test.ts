// Captured steps (core/capture.ts): a replayed training step equals the eager one bit for bit (an MLP with a
// changing learning rate, a CLIP step with AdamW; uniforms at dynamic offsets and in fixed slots), costs only encoder calls, holds its memory flat, re-records
// when an input's shape or a parameter changes, and refuses — with the reason — a step that reads GPU data
// back or whose host values change between recordings.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { CONFIGS } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep } from '../clip/step.ts';
import { AdamW } from '../nn/optim.ts';
import * as R from '../kernels/reference.ts';
import { matmulRaw } from '../kernels/matmul.ts';
import { assertTensorClose, randn, suite, toTensor } from './harness.ts';

const test = suite('capture');

/** A small MLP classifier with AdamW, seeded, and its training step on (x, labels). */
function mlp(seed: number) {
  T.manualSeed(seed);
  const params = [T.param(T.mul(T.randNormal([6, 16]), 0.4)), T.param(T.zeros([16])), T.param(T.mul(T.randNormal([16, 3]), 0.4)), T.param(T.zeros([3]))];
  const [w1, b1, w2, b2] = params;
  const optimizer = new AdamW(params, { lr: 0.05, weightDecay: 0.1 });
  const step = (x: T.Tensor, labels: T.Tensor) => {
    const loss = T.tidy(() => {
      const h = T.matmul(x, w1, { bias: b1, activation: 'gelu' });
      const l = T.crossEntropy(T.matmul(h, w2, { bias: b2 }), labels);
      T.backward(l);
      return l;
    });
    optimizer.step();
    optimizer.zeroGrad();
    return loss;
  };
  return { params, optimizer, step, dispose: () => (params.forEach((p) => p.dispose()), optimizer.dispose()) };
}

/** Batch `i` of a seeded task: fresh tensors each step, as a data loader gives them. */
function batch(i: number): [T.Tensor, T.Tensor] {
  const gen = new T.Generator(1000 + i);
  const x = T.randNormal([10, 6], 0, 1, gen);
  const labels = T.Tensor.from(Int32Array.from({ length: 10 }, (_, k) => (k * 7 + i) % 3), [10], 'i32');
  return [x, labels];
}

const bits = async (t: T.Tensor) => new Uint32Array((await t.data()).buffer.slice(0));

test('a replayed MLP step equals the eager step bit for bit, with the learning rate changing every step', async () => {
  const eager = mlp(7);
  const captured = mlp(7);
  const step = new T.CapturedStep(captured.step, 'mlp step');
  const lossesEager: number[] = [];
  const lossesCaptured: number[] = [];
  for (let i = 0; i < 7; i++) {
    const lr = 0.05 * (1 - i / 10);
    eager.optimizer.setLr(lr);
    captured.optimizer.setLr(lr);
    const [x, labels] = batch(i);
    const a = eager.step(x, labels);
    const b = step.run(x, labels);
    lossesEager.push(await a.item());
    lossesCaptured.push(await b.item());
    for (const t of [a, b, x, labels]) t.dispose();
    if (i >= 3) assert.ok(step.ready, `replaying from the fourth step (step ${i})`);
    // The first replay used dynamic uniform offsets; the later ones the fixed-slot pipelines: both bit for bit.
    if (i === 3) {
      assert.is(step.replayForm, 'dynamic offsets');
      await step.settled();
      assert.is(step.replayForm, 'fixed slots');
    }
  }
  assert.is(step.refusal, null);
  assert.is(step.replays, 4, 'steps 4–7 replayed');
  assert.equal(lossesCaptured, lossesEager);
  assert.is(captured.optimizer.stepCount, eager.optimizer.stepCount, 'replays count as optimizer steps');
  for (const [k, p] of captured.params.entries()) assert.equal(await bits(p), await bits(eager.params[k]), `parameter ${k}, bit for bit`);
  step.dispose();
  eager.dispose();
  captured.dispose();
});

test('a replayed CLIP training step (ViT-tiny, AdamW, logit-scale clamp) equals the eager one bit for bit', async () => {
  const config = { ...CONFIGS['ViT-tiny'], vocabSize: 100 };
  const make = () => {
    T.manualSeed(3);
    const model = new CLIP(config);
    const optimizer = new AdamW(model.parameters(), { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
    return { model, optimizer };
  };
  const [eager, captured] = [make(), make()];
  const step = new T.CapturedStep((images: T.Tensor, tokens: T.Tensor) => trainStep(captured.model, captured.optimizer, images, tokens), 'clip step');
  for (let i = 0; i < 5; i++) {
    const gen = new T.Generator(50 + i);
    const images = T.randNormal([4, 3, 32, 32], 0, 1, gen);
    const tokens = T.Tensor.from(Int32Array.from({ length: 4 * 16 }, (_, k) => (k % 16 === 5 ? 99 : k % 16 > 5 ? 0 : 1 + ((k * 31 + i) % 97))), [4, 16], 'i32');
    const [a, b] = [trainStep(eager.model, eager.optimizer, images, tokens), step.run(images, tokens)];
    assert.is(await b.item(), await a.item(), `loss of step ${i}`);
    for (const t of [a, b, images, tokens]) t.dispose();
    await step.settled();
  }
  assert.is(step.replayForm, 'fixed slots');
  assert.is(step.replays, 2);
  const named = new Map(eager.model.namedParameters());
  for (const [name, p] of captured.model.namedParameters()) assert.equal(await bits(p), await bits(named.get(name)!), name);
  step.dispose();
  for (const side of [eager, captured]) {
    side.model.dispose();
    side.optimizer.dispose();
  }
});

test('replays issue only encoder calls and hold GPU memory flat', async () => {
  const model = mlp(11);
  const step = new T.CapturedStep(model.step, 'mlp step');
  const [x, labels] = batch(0);
  for (let i = 0; i < 3; i++) step.run(x, labels).dispose();
  await T.sync();
  const before = T.memory();
  for (let i = 0; i < 20; i++) step.run(x, labels).dispose();
  await T.sync();
  const after = T.memory();
  assert.is(after.liveBytes, before.liveBytes, 'no GPU bytes gained over 20 replays');
  assert.is(after.allocations, before.allocations, 'no buffer made');
  assert.is(after.pipelinesCompiled, before.pipelinesCompiled);
  assert.ok(after.dispatches > before.dispatches);
  step.dispose();
  for (const t of [x, labels]) t.dispose();
  model.dispose();
});

test('a new input shape or a replaced parameter makes the step record again (and stay right)', async () => {
  const model = mlp(5);
  const step = new T.CapturedStep(model.step, 'mlp step');
  const [x, labels] = batch(0);
  for (let i = 0; i < 3; i++) step.run(x, labels).dispose();
  assert.ok(step.ready);
  const wider = T.randNormal([12, 6]);
  const widerLabels = T.Tensor.from(Int32Array.from({ length: 12 }, (_, k) => k % 3), [12], 'i32');
  const loss = step.run(wider, widerLabels);
  assert.not.ok(step.ready, 'a batch of 12 rows is not the recorded step');
  assert.ok(Number.isFinite(await loss.item()));
  loss.dispose();
  for (let i = 0; i < 2; i++) step.run(wider, widerLabels).dispose();
  assert.ok(step.ready, 'recorded again at the new shape');
  // Optimizer state loaded (a checkpoint): AdamW copies it into its flat moments, the buffers the recording
  // holds, so the step goes on replaying.
  const state = model.optimizer.stateDict();
  const copies = new Map([...state.tensors].map(([k, t]) => [k, T.keep(T.add(t, 0))]));
  model.optimizer.loadStateDict({ step: state.step, tensors: copies });
  for (const t of copies.values()) t.dispose();
  step.run(wider, widerLabels).dispose();
  assert.ok(step.ready, 'optimizer state loaded in place: still replaying');
  // A parameter given new storage (PyTorch's param.data = …): its old buffer is gone, the recording is stale.
  model.params[0].adopt(T.add(model.params[0], 0));
  step.run(wider, widerLabels).dispose();
  assert.not.ok(step.ready, 'a replaced parameter: recorded again');
  // A shape change between the two recordings starts them over instead of refusing the step.
  const fresh = new T.CapturedStep(model.step, 'mlp step');
  for (const [input, label] of [[x, labels], [x, labels], [wider, widerLabels], [wider, widerLabels]]) fresh.run(input, label).dispose();
  assert.ok(fresh.ready && fresh.refusal === null, 'recorded twice at the new shape');
  fresh.dispose();
  step.dispose();
  for (const t of [x, labels, wider, widerLabels]) t.dispose();
  model.dispose();
});

test('a step that reads GPU data back, whose host values change, or that frees an outside tensor is refused with the reason', async () => {
  const x = T.keep(T.randNormal([1]));
  const reads: Promise<unknown>[] = [];
  const reading = new T.CapturedStep(() => {
    const y = T.mul(x, 2);
    reads.push(y.item().catch((e: unknown) => e));
    return y;
  }, 'reading step');
  for (let i = 0; i < 3; i++) reading.run().dispose();
  assert.match(reading.refusal ?? '', /reading step runs eagerly: it read GPU data back while being captured/);
  const results = await Promise.all(reads);
  assert.instance(results[1], T.CaptureError, 'the read while recording failed, naming why');
  assert.is(typeof results[2], 'number', 'the eager run after it reads as usual');
  let factor = 1;
  const drifting = new T.CapturedStep(() => T.mul(x, factor++), 'drifting step');
  const outs = [0, 1, 2, 3].map(() => drifting.run());
  assert.match(drifting.refusal ?? '', /drifting step runs eagerly: command 0 \(.*\): uniform 'k1' differs between the recordings/);
  assert.equal([...(await outs[3].data())], [...(await T.mul(x, 4).data())], 'still computed eagerly, right');
  for (const t of outs) t.dispose();
  // A step that disposes a tensor made before it (a gradient computed outside, zeroed inside): that buffer is
  // not the step's scratch, and a replay would read what the pool put there since.
  const w = T.param(T.randNormal([3]));
  const optimizer = new AdamW([w], { lr: 0.1 });
  const updating = new T.CapturedStep(() => {
    optimizer.step();
    optimizer.zeroGrad();
    return null;
  }, 'update step');
  for (let i = 0; i < 4; i++) {
    T.backward(T.sum(T.mul(w, w)));
    updating.run();
  }
  assert.match(updating.refusal ?? '', /update step runs eagerly: command \d+ \(adamw\w*\) used a tensor that existed before the step and was disposed during it/);
  assert.is(optimizer.stepCount, 4);
  optimizer.dispose();
  w.dispose();
  x.dispose();
});

test('precompile compiles what a plan would use, in parallel, dispatching nothing; the real run then compiles nothing', async () => {
  const [a, b, bias] = [toTensor(randn([5, 7], 1)), toTensor(randn([7, 9], 2)), toTensor(randn([9], 3))];
  // A tile no other test runs, so its pipeline is new here.
  const config = { version: 'v2', tm: 2, tn: 8 } as const;
  const run = () => matmulRaw(a, b, { bias, activation: 'quickgelu' }, config);
  const before = T.memory();
  const compiled = await T.precompile(() => run().dispose());
  const planned = T.memory();
  assert.is(compiled, 1, 'one new pipeline');
  assert.is(planned.pipelinesCompiled, before.pipelinesCompiled + 1);
  assert.is(planned.dispatches, before.dispatches, 'nothing dispatched while planning');
  const out = run();
  assert.is(T.memory().pipelinesCompiled, planned.pipelinesCompiled, 'the real run finds it compiled');
  const want = R.map(R.zip([R.matmul(randn([5, 7], 1), randn([7, 9], 2)), R.Nd.from(Array.from({ length: 45 }, (_, k) => randn([9], 3).data[k % 9]), [5, 9])], (x, y) => x + y), R.quickgelu);
  await assertTensorClose(out, want, 'the precompiled kernel computes', { atol: 1e-5, rtol: 1e-5 });
  assert.is(await T.precompile(() => run().dispose()), 0, 'nothing left to compile');
  await T.precompile(() => {
    const y = run();
    void y.data().catch(() => {});
    y.dispose();
  }).then(
    () => assert.unreachable('a plan that reads back is refused'),
    (e: Error) => assert.match(e.message, /precompile: the planned work read GPU data back/),
  );
  for (const t of [a, b, bias, out]) t.dispose();
});

test.run();
