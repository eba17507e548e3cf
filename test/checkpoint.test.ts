// Gradient checkpointing (ops/checkpoint.ts, CLIP's gradientCheckpointing): the same loss and gradients as the
// recorded forward, for less activation memory; the op's own gradient check is in the gradcheck table.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { CONFIGS } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { lossAndGradients } from '../clip/step.ts';
import { assertClose, suite } from './harness.ts';

const test = suite('checkpoint');

const config = { ...CONFIGS['ViT-tiny'], vocabSize: 100, visionLayers: 4, transformerLayers: 3 };

function inputs(batch: number): [T.Tensor, T.Tensor] {
  const images = T.randNormal([batch, 3, 32, 32], 0, 1, new T.Generator(5));
  const ids = Int32Array.from({ length: batch * 16 }, (_, k) => (k % 16 === 6 ? 99 : k % 16 > 6 ? 0 : 1 + ((k * 13) % 97)));
  return [images, T.Tensor.from(ids, [batch, 16], 'i32')];
}

/** Loss, every parameter's gradient and the peak GPU bytes of one loss-and-gradients pass. */
async function pass(checkpointing: boolean, batch: number) {
  T.manualSeed(9);
  const model = new CLIP(config);
  model.gradientCheckpointing = checkpointing;
  const [images, tokens] = inputs(batch);
  await T.sync();
  T.resetPeakMemory();
  const loss = lossAndGradients(model, images, tokens);
  await T.sync();
  const peak = T.memory().peakBytes;
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) grads.set(name, (await p.grad!.data()) as Float32Array);
  const value = await loss.item();
  for (const t of [loss, images, tokens, model]) t.dispose();
  return { value, grads, peak };
}

test('a checkpointed CLIP (both towers) gives the recorded forward\'s loss and gradients, for less memory', async () => {
  const plain = await pass(false, 8);
  const recomputed = await pass(true, 8);
  assert.is(recomputed.value, plain.value, 'the forward is the same computation');
  assert.is(recomputed.grads.size, plain.grads.size);
  for (const [name, g] of plain.grads) assertClose(recomputed.grads.get(name)!, g, name, { atol: 1e-6, rtol: 1e-5 });
  assert.ok(recomputed.peak < plain.peak, `peak ${recomputed.peak} bytes with checkpointing, ${plain.peak} without`);
});

test('checkpoint outside autodiff is the block itself, and an input that needs no gradient records nothing', async () => {
  const x = T.randNormal([2, 3]);
  const y = T.noGrad(() => T.checkpoint((h) => T.exp(h), x));
  assert.is(y.node, null);
  const z = T.checkpoint((h) => T.exp(h), x);
  assert.is(z.node, null, 'x is a constant');
  assertClose(await z.data(), await T.exp(x).data(), 'value', { atol: 0, rtol: 0 });
  for (const t of [x, y, z]) t.dispose();
});

test.run();
