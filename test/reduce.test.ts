// Reductions over every kind of axis set, against float64 references.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { assertTensorClose, randn, suite, toTensor } from './harness.ts';

const test = suite('reduce');

const CASES: [number[], number[] | undefined][] = [
  [[7], undefined],
  [[33, 129], [1]],
  [[33, 129], [0]],
  [[3, 7, 33], [0, 2]],
  [[3, 7, 33], [1, 2]],
  [[5, 1, 9], [1]],
  [[257, 3], undefined],
  [[2, 3, 5, 7], [0, 1, 3]],
];

const sumRef = (x: R.Nd, axes: number[], keep: boolean, scale = 1) => R.reduce(x, axes, keep, 0, (a, v) => a + v, scale);
const allAxes = (x: R.Nd, axes?: number[]) => axes ?? [...x.shape.keys()];

test('sum and mean over any axes, with and without keepDims', async () => {
  for (const [i, [shape, axes]] of CASES.entries()) {
    const x = randn(shape, 500 + i);
    const ax = allAxes(x, axes);
    const n = ax.reduce((p, a) => p * shape[a], 1);
    for (const keepDims of [false, true]) {
      await assertTensorClose(T.sum(toTensor(x), axes, { keepDims }), sumRef(x, ax, keepDims), `sum ${shape} ${axes}`, { atol: 1e-4, rtol: 1e-5 });
      await assertTensorClose(T.mean(toTensor(x), axes, { keepDims }), sumRef(x, ax, keepDims, 1 / n), `mean ${shape} ${axes}`, { atol: 1e-5, rtol: 1e-5 });
    }
  }
});

test('max and min, including a transposed input', async () => {
  for (const [i, [shape, axes]] of CASES.entries()) {
    const x = randn(shape, 600 + i);
    const ax = allAxes(x, axes);
    await assertTensorClose(T.max(toTensor(x), axes), R.reduce(x, ax, false, -Infinity, Math.max), `max ${shape} ${axes}`);
    await assertTensorClose(T.min(toTensor(x), axes), R.reduce(x, ax, false, Infinity, Math.min), `min ${shape} ${axes}`);
  }
  const x = randn([33, 7], 7);
  await assertTensorClose(T.max(T.transpose(toTensor(x)), 1), R.reduce(R.permute(x, [1, 0]), [1], false, -Infinity, Math.max), 'max of transpose');
});

test('a long full reduction takes the split path and stays accurate', async () => {
  const x = randn([300_001], 77);
  await assertTensorClose(T.sum(toTensor(x)), sumRef(x, [0], false), 'sum 300001', { atol: 2e-2, rtol: 1e-4 });
  await assertTensorClose(T.max(toTensor(x)), R.reduce(x, [0], false, -Infinity, Math.max), 'max 300001');
  const y = randn([5, 20_000], 78);
  await assertTensorClose(T.mean(toTensor(y), 1), sumRef(y, [1], false, 1 / 20_000), 'mean rows', { atol: 1e-5, rtol: 1e-4 });
});

test('argmax and argmin return the first extreme index, on f32 and i32', async () => {
  for (const [i, shape] of [[7], [33, 129], [3, 7, 33]].entries()) {
    const x = randn(shape, 700 + i);
    for (const axis of [0, shape.length - 1]) {
      await assertTensorClose(T.argmax(toTensor(x), axis), R.argReduce(x, axis, (a, b) => a > b), `argmax ${shape} axis ${axis}`);
      await assertTensorClose(T.argmin(toTensor(x), axis), R.argReduce(x, axis, (a, b) => a < b), `argmin ${shape} axis ${axis}`);
    }
  }
  const ids = T.Tensor.from(Int32Array.from([3, 9, 9, 1, 49407, 0, 5, 49407]), [2, 4]);
  const am = T.argmax(ids, -1);
  assert.is(am.dtype, 'i32');
  assert.equal(Array.from(await am.data()), [1, 0]);
});

test('variance and logSumExp', async () => {
  const x = randn([7, 33], 31, 3);
  const mu = sumRef(x, [1], true, 1 / 33);
  const sq = R.zip([x, mu], (a, m) => (a - m) ** 2);
  await assertTensorClose(T.variance(toTensor(x), 1), sumRef(sq, [1], false, 1 / 33), 'var', { atol: 1e-5, rtol: 1e-5 });
  await assertTensorClose(T.variance(toTensor(x), 1, { correction: 1 }), sumRef(sq, [1], false, 1 / 32), 'unbiased var', { atol: 1e-5, rtol: 1e-5 });
  const big = R.map(x, (v) => v * 100);
  const m = R.reduce(big, [1], true, -Infinity, Math.max);
  const lse = R.zip([sumRef(R.zip([big, m], (a, b) => Math.exp(a - b)), [1], true), m], (s, b) => Math.log(s) + b);
  await assertTensorClose(T.logSumExp(toTensor(big), 1, { keepDims: true }), lse, 'logSumExp', { atol: 1e-4, rtol: 1e-6 });
});

test.run();
