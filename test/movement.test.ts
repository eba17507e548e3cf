// Views and copies: reshape (view or copy), permute, expand, slice, concat, stack, pad, index_select,
// embedding, and the creation ops.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { assertTensorClose, randInt, randn, suite, toTensor } from './harness.ts';

const test = suite('movement');

test('reshape is a view when the layout allows and a copy otherwise', async () => {
  const x = randn([6, 35], 1);
  const t = toTensor(x);
  const r = T.reshape(t, [2, 3, 5, 7]);
  assert.is(r.storage, t.storage);
  await assertTensorClose(r, R.reshape(x, [2, 3, 5, 7]), 'reshape view');
  const inferred = T.reshape(t, [-1, 7]);
  assert.equal(inferred.shape, [30, 7]);
  const tr = T.transpose(t);
  const flat = T.reshape(tr, [210]);
  assert.is.not(flat.storage, t.storage);
  await assertTensorClose(flat, R.reshape(R.permute(x, [1, 0]), [210]), 'reshape of a transpose copies');
  // Merging axes that stay contiguous in a permuted view is still a view.
  const p = T.permute(T.reshape(t, [6, 5, 7]), [0, 2, 1]);
  const split = T.reshape(p, [2, 3, 7, 5]);
  assert.is(split.storage, t.storage);
  await assertTensorClose(split, R.reshape(R.permute(R.reshape(x, [6, 5, 7]), [0, 2, 1]), [2, 3, 7, 5]), 'split a permuted axis');
  await assertTensorClose(T.squeeze(T.unsqueeze(t, 1), 1), x, 'squeeze(unsqueeze)');
});

test('permute, expand and slice read correctly after contiguous()', async () => {
  const x = randn([3, 4, 5], 2);
  await assertTensorClose(T.contiguous(T.permute(toTensor(x), [2, 0, 1])), R.permute(x, [2, 0, 1]), 'permute');
  const e = randn([1, 4, 1], 3);
  await assertTensorClose(T.contiguous(T.expand(toTensor(e), [3, 4, 5])), R.expand(e, [3, 4, 5]), 'expand');
  await assertTensorClose(T.contiguous(T.slice(toTensor(x), [1, -3, 0], [3, 4, -1])), R.slice(x, [1, 1, 0], [3, 4, 4]), 'slice');
  await assertTensorClose(T.narrow(toTensor(x), 2, 1, 3), R.slice(x, [0, 0, 1], [3, 4, 4]), 'narrow');
});

test('concat, stack and pad', async () => {
  const a = randn([3, 2, 5], 4);
  const b = randn([3, 7, 5], 5);
  const c = randn([3, 1, 5], 6);
  await assertTensorClose(T.concat([toTensor(a), toTensor(b), toTensor(c)], 1), R.concat([a, b, c], 1), 'concat axis 1');
  const s = T.stack([toTensor(a), toTensor(a)], 0);
  await assertTensorClose(s, R.concat([R.reshape(a, [1, 3, 2, 5]), R.reshape(a, [1, 3, 2, 5])], 0), 'stack');
  await assertTensorClose(T.pad(toTensor(a), [[1, 2], [0, 0], [3, 1]], -1), R.pad(a, [[1, 2], [0, 0], [3, 1]], -1), 'pad');
  const ti = T.Tensor.from(Int32Array.from([1, 2, 3]), [3]);
  assert.equal(Array.from(await T.concat([ti, ti]).data()), [1, 2, 3, 1, 2, 3]);
});

test('indexSelect and embedding gather rows, repeated indices included', async () => {
  const x = randn([7, 33, 3], 7);
  const idx = Int32Array.from([6, 0, 0, 3, 6, 2]);
  for (const axis of [0, 1, 2]) {
    const index = Int32Array.from(idx, (v) => v % x.shape[axis]);
    await assertTensorClose(T.indexSelect(toTensor(x), axis, T.Tensor.from(index)), R.indexSelect(x, axis, index), `indexSelect axis ${axis}`);
  }
  const table = randn([257, 9], 8);
  const ids = randInt(2 * 77, 257, 9);
  const emb = T.embedding(toTensor(table), T.Tensor.from(ids, [2, 77]));
  assert.equal(emb.shape, [2, 77, 9]);
  await assertTensorClose(emb, R.reshape(R.indexSelect(table, 0, ids), [2, 77, 9]), 'embedding');
});

test('creation: fill, arange, and seeded random streams', async () => {
  assert.equal(Array.from(await T.fill([2, 2], 3.5).data()), [3.5, 3.5, 3.5, 3.5]);
  assert.equal(Array.from(await T.arange(5).data()), [0, 1, 2, 3, 4]);
  assert.equal(Array.from(await T.arange(1, 2, 0.25, 'f32').data()), [1, 1.25, 1.5, 1.75]);
  T.manualSeed(42);
  const a = Array.from(await T.randNormal([100_000]).data());
  const b = await T.randNormal([7]).data();
  T.manualSeed(42);
  assert.equal(Array.from(await T.randNormal([100_000]).data()), a);
  assert.equal(Array.from(await T.randNormal([7]).data()), Array.from(b));
  const mean = a.reduce((p, q) => p + q, 0) / a.length;
  const variance = a.reduce((p, q) => p + (q - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.01 && Math.abs(variance - 1) < 0.02, `normal moments ${mean} ${variance}`);
  const u = Array.from(await T.randUniform([100_000], -2, 3, new T.Generator(7)).data());
  assert.ok(u.every((v) => v >= -2 && v < 3));
  const um = u.reduce((p, q) => p + q, 0) / u.length;
  assert.ok(Math.abs(um - 0.5) < 0.02, `uniform mean ${um}`);
  assert.not.equal(u.slice(0, 5), Array.from(await T.randUniform([5], -2, 3, new T.Generator(8)).data()));
});

test.run();
