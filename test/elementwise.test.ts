// Every elementwise op against its float64 reference: odd shapes, broadcasting, strided views, scalars.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { assertTensorClose, randn, suite, toTensor, toNd } from './harness.ts';

const test = suite('elementwise');
const SHAPES = [[1], [7], [33], [3, 129], [257, 3]];
const TOL = { atol: 1e-6, rtol: 1e-5 };

const UNARY: [string, (x: T.Tensor) => T.Tensor, (v: number) => number, ((v: number) => number)?][] = [
  ['neg', T.neg, (v) => -v],
  ['abs', T.abs, Math.abs],
  ['exp', T.exp, Math.exp],
  ['log', T.log, Math.log, Math.abs],
  ['sqrt', T.sqrt, Math.sqrt, Math.abs],
  ['rsqrt', T.rsqrt, (v) => 1 / Math.sqrt(v), (v) => Math.abs(v) + 0.1],
  ['tanh', T.tanh, Math.tanh],
  ['sigmoid', T.sigmoid, R.sigmoid],
  ['relu', T.relu, (v) => Math.max(v, 0)],
  ['gelu', T.gelu, R.gelu],
  ['quickgelu', T.quickgelu, R.quickgelu],
];

for (const [name, op, ref, domain] of UNARY) {
  test(`${name} on odd shapes`, async () => {
    for (const [i, shape] of SHAPES.entries()) {
      const x = R.map(randn(shape, 100 + i, 3), domain ?? ((v) => v));
      await assertTensorClose(op(toTensor(x)), R.map(x, ref), `${name} ${shape}`, TOL);
    }
  });
}

test('tanh, sigmoid and gelu stay finite at extreme inputs', async () => {
  const x = R.Nd.from([-1e4, -90, -20, 0, 20, 90, 1e4], [7]);
  await assertTensorClose(T.tanh(toTensor(x)), R.map(x, Math.tanh), 'tanh', TOL);
  await assertTensorClose(T.sigmoid(toTensor(x)), R.map(x, R.sigmoid), 'sigmoid', TOL);
  await assertTensorClose(T.gelu(toTensor(x)), R.map(x, R.gelu), 'gelu', TOL);
});

const BINARY: [string, (a: T.Operand, b: T.Operand) => T.Tensor, (a: number, b: number) => number][] = [
  ['add', T.add, (a, b) => a + b],
  ['sub', T.sub, (a, b) => a - b],
  ['mul', T.mul, (a, b) => a * b],
  ['div', T.div, (a, b) => a / b],
];
const BROADCAST: [number[], number[]][] = [
  [[33], [33]],
  [[3, 1, 7], [5, 1]],
  [[1], [4, 129]],
  [[257, 3], [3]],
  [[2, 3, 4, 5, 6], [1, 3, 1, 5, 1]],
];

for (const [name, op, ref] of BINARY) {
  test(`${name} with broadcasting`, async () => {
    for (const [i, [sa, sb]] of BROADCAST.entries()) {
      const a = randn(sa, 200 + i);
      const b = R.map(randn(sb, 300 + i), (v) => (name === 'div' ? Math.sign(v) * (Math.abs(v) + 0.5) : v));
      await assertTensorClose(op(toTensor(a), toTensor(b)), R.zip([a, b], ref), `${name} ${sa} ${sb}`, TOL);
    }
  });
  test(`${name} with a scalar on either side`, async () => {
    const a = randn([7, 33], 400);
    await assertTensorClose(op(toTensor(a), 1.75), R.map(a, (v) => ref(v, 1.75)), `${name}(t, s)`, TOL);
    await assertTensorClose(op(-2.5, toTensor(a)), R.map(a, (v) => ref(-2.5, v)), `${name}(s, t)`, { atol: 1e-4, rtol: 1e-5 });
  });
}

test('pow follows PyTorch on negative bases and zero exponents', async () => {
  const a = R.Nd.from([-2, -2, -2, 0, 0, 3, 1.5], [7]);
  const b = R.Nd.from([2, 3, 0.5, 0, 2, -1, 2.5], [7]);
  await assertTensorClose(T.pow(toTensor(a), toTensor(b)), R.zip([a, b], R.powRef), 'pow', TOL);
  const x = R.map(randn([33], 9), (v) => Math.abs(v) + 0.1);
  await assertTensorClose(T.pow(toTensor(x), 1.5), R.map(x, (v) => v ** 1.5), 'pow scalar', TOL);
});

test('strided inputs: transposed, sliced and expanded views read without copies', async () => {
  /** op(), checked to be one dispatch writing one new buffer: the strided operand was read in place. */
  const inOneDispatch = (op: () => T.Tensor) => {
    const before = T.memory();
    const out = op();
    const after = T.memory();
    assert.is(after.dispatches - before.dispatches, 1, 'dispatches');
    assert.is(after.allocations + after.reuses - before.allocations - before.reuses, 1, 'buffers requested');
    return out;
  };
  const a = randn([33, 7], 11);
  const b = randn([7, 33], 12);
  const at = T.transpose(toTensor(a));
  const bt = toTensor(b);
  assert.is(at.isContiguous, false);
  await assertTensorClose(inOneDispatch(() => T.add(at, bt)), R.zip([R.permute(a, [1, 0]), b], (x, y) => x + y), 'transposed', TOL);
  const s = T.slice(toTensor(a), [3, 2], [30, 5]);
  await assertTensorClose(inOneDispatch(() => T.exp(s)), R.map(R.slice(a, [3, 2], [30, 5]), Math.exp), 'sliced', TOL);
  const col = randn([33, 1], 13);
  const e = T.expand(toTensor(col), [33, 9]);
  await assertTensorClose(inOneDispatch(() => T.mul(e, 2)), R.map(R.expand(col, [33, 9]), (v) => 2 * v), 'expanded', TOL);
});

test('clamp, where, maskedFill and comparisons', async () => {
  const x = randn([5, 33], 21, 2);
  const y = randn([5, 33], 22, 2);
  await assertTensorClose(T.clamp(toTensor(x), -0.5, 0.7), R.map(x, (v) => Math.min(Math.max(v, -0.5), 0.7)), 'clamp', TOL);
  const mask = T.gt(toTensor(x), toTensor(y));
  assert.is(mask.dtype, 'i32');
  const expectMask = R.zip([x, y], (a, b) => (a > b ? 1 : 0));
  await assertTensorClose(mask, expectMask, 'gt');
  await assertTensorClose(T.where(mask, toTensor(x), toTensor(y)), R.zip([x, y], Math.max), 'where', TOL);
  await assertTensorClose(T.maskedFill(toTensor(x), mask, -1e9), R.zip([x, y], (a, b) => (a > b ? -1e9 : a)), 'maskedFill', TOL);
  const cmp: [string, (a: T.Operand, b: T.Operand) => T.Tensor, (a: number, b: number) => boolean][] = [
    ['eq', T.eq, (a, b) => a === b], ['ne', T.ne, (a, b) => a !== b], ['lt', T.lt, (a, b) => a < b],
    ['le', T.le, (a, b) => a <= b], ['ge', T.ge, (a, b) => a >= b],
  ];
  // The first 10 entries equal y's, so eq/ne/le/ge see ties.
  const z = R.Nd.from([...y.data.slice(0, 10), ...x.data.slice(10)], [5, 33]);
  for (const [name, op, ref] of cmp) await assertTensorClose(op(toTensor(z), toTensor(y)), R.zip([z, y], (a, b) => +ref(a, b)), name);
});

test('i32 arithmetic and casts', async () => {
  const a = T.Tensor.from(Int32Array.from([5, -3, 7, 0]), [4]);
  const b = T.Tensor.from(Int32Array.from([2, 2, -3, 9]), [4]);
  assert.equal(Array.from(await T.add(a, b).data()), [7, -1, 4, 9]);
  assert.equal(Array.from(await T.mul(a, 3).data()), [15, -9, 21, 0]);
  assert.equal(Array.from(await T.cast(T.Tensor.from([1.9, -1.9, 3, 0.2]), 'i32').data()), [1, -1, 3, 0]);
  const f = T.cast(a, 'f32');
  assert.is(f.dtype, 'f32');
  assert.equal(Array.from(await f.data()), [5, -3, 7, 0]);
  assert.equal((await toNd(T.cast(f, 'f32'))).shape, [4]);
});

test.run();
