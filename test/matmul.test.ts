// Matmul against the float64 reference: odd shapes, transposed operands, broadcast batches, fused epilogue,
// for every kernel version and tile configuration.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { matmulUnsupported } from '../kernels/policy.ts';
import { MATMUL_VARIANTS, matmulRaw, type MatmulConfig } from '../kernels/matmul.ts';
import { getEngine } from '../core/engine.ts';
import { assertTensorClose, assertThrows, randn, skipTest, suite, toTensor } from './harness.ts';

const test = suite('matmul');
// Every benchmarked variant, plus a 2×4 block whose tiles do not divide most of the shapes.
const CONFIGS: MatmulConfig[] = [...MATMUL_VARIANTS, { version: 'v2', tm: 2, tn: 4 }];
const DIMS = [1, 3, 7, 33, 129];
const tol = (K: number) => ({ atol: 1e-5 * Math.sqrt(K) * 4, rtol: 1e-5 });

for (const config of CONFIGS) {
  const name = `${config.version} ${config.tm}x${config.tn}`;
  const reason = matmulUnsupported(config);
  if (reason) {
    skipTest(test, `${name}: every shape`, reason);
    continue;
  }
  test(`${name}: odd M, N, K`, async () => {
    let seed = 1000;
    for (const M of DIMS) for (const N of [1, 4, 33, 257]) for (const K of [1, 7, 12, 129]) {
      if (M * N * K > 1_200_000) continue;
      const a = randn([M, K], seed++);
      const b = randn([K, N], seed++);
      await assertTensorClose(matmulRaw(toTensor(a), toTensor(b), {}, config), R.matmul(a, b), `${name} ${M}x${K}x${N}`, tol(K));
    }
  });
  test(`${name}: transposed operands are views, not copies`, async () => {
    const a = randn([33, 7], 1);
    const b = randn([129, 33], 2);
    const at = T.transpose(toTensor(a));
    const bt = T.transpose(toTensor(b));
    const want = R.matmul(R.permute(a, [1, 0]), R.permute(b, [1, 0]));
    // One dispatch and one allocation (the result): no kernel copies a transposed operand first.
    const before = T.memory();
    const product = matmulRaw(at, bt, {}, config);
    const after = T.memory();
    assert.is(after.dispatches - before.dispatches, 1, 'dispatches');
    assert.is(after.allocations + after.reuses - before.allocations - before.reuses, 1, 'buffers requested');
    await assertTensorClose(product, want, `${name} aᵀ·bᵀ`, tol(33));
    // Aligned shapes select the vector load modes: aᵀ by rows (m4), bᵀ by k (k4), and x·Wᵀ (k4 · k4).
    for (const [[ra, ca], [rb, cb], ta, tb] of [[[16, 8], [20, 16], true, true], [[8, 16], [20, 16], false, true], [[12, 8], [12, 20], true, false]] as const) {
      const x = randn([ra, ca], 3 + ra);
      const y = randn([rb, cb], 4 + rb);
      const xa = ta ? T.transpose(toTensor(x)) : toTensor(x);
      const yb = tb ? T.transpose(toTensor(y)) : toTensor(y);
      const ref = R.matmul(ta ? R.permute(x, [1, 0]) : x, tb ? R.permute(y, [1, 0]) : y);
      await assertTensorClose(matmulRaw(xa, yb, {}, config), ref, `${name} ${ta ? 'aᵀ' : 'a'}·${tb ? 'bᵀ' : 'b'} aligned`, tol(16));
    }
  });
  test(`${name}: broadcast batches, bias and activation epilogues`, async () => {
    const a = randn([2, 3, 7, 33], 3);
    const b = randn([3, 33, 12], 4);
    const bias = randn([12], 5);
    const mm = R.matmul(a, b);
    await assertTensorClose(matmulRaw(toTensor(a), toTensor(b), {}, config), mm, `${name} batched`, tol(33));
    const biased = R.zip([mm, bias], (x, y) => x + y);
    for (const [act, f] of [['none', (v: number) => v], ['relu', (v: number) => Math.max(v, 0)], ['gelu', R.gelu], ['quickgelu', R.quickgelu]] as const) {
      await assertTensorClose(matmulRaw(toTensor(a), toTensor(b), { bias: toTensor(bias), activation: act }, config), R.map(biased, f), `${name} bias+${act}`, tol(33));
    }
    // A residual added after the activation, read at an offset: residual + gelu(a·b + bias).
    const residual = randn([2, 3, 7, 12], 6);
    const base = toTensor(R.concat([R.reshape(randn([5], 7), [5]), R.reshape(residual, [2 * 3 * 7 * 12])], 0));
    const r = base.view([2, 3, 7, 12], undefined, 5);
    const want = R.zip([R.map(biased, R.gelu), residual], (x, y) => x + y);
    await assertTensorClose(matmulRaw(toTensor(a), toTensor(b), { bias: toTensor(bias), activation: 'gelu', residual: r }, config), want, `${name} bias+gelu+residual`, tol(33));
    // Rows folded into one tall product (a 2-D B): the residual follows the folded rows.
    const w = randn([33, 12], 8);
    const x = randn([3, 7, 33], 9);
    const r2 = randn([3, 7, 12], 10);
    const folded = matmulRaw(toTensor(x), toTensor(w), { residual: toTensor(r2) }, config);
    await assertTensorClose(folded, R.zip([R.matmul(x, w), r2], (p, q) => p + q), `${name} folded rows + residual`, tol(33));
  });
}

test('a residual that is not contiguous or not of the result\'s size is refused by the kernel; the op checks shape and dtype', async () => {
  const [a, b] = [toTensor(randn([4, 3], 1)), toTensor(randn([3, 5], 2))];
  await assertThrows(() => matmulRaw(a, b, { residual: T.transpose(toTensor(randn([5, 4], 3))) }), T.ShapeError, /residual must be a contiguous/);
  await assertThrows(() => matmulRaw(a, b, { residual: toTensor(randn([4, 4], 3)) }), T.ShapeError, /residual must be a contiguous/);
  await assertThrows(() => T.matmul(a, b, { residual: toTensor(randn([5, 4], 3)) }), T.ShapeError, /the residual is \[5, 4\], the result \[4, 5\]/);
  await assertThrows(() => T.matmul(a, b, { residual: T.zeros([4, 5], 'i32') }), T.DTypeError, /the residual is i32, the result f32/);
  // A non-contiguous residual at the op level is added after the kernel instead (same values).
  const r = toTensor(randn([5, 4], 4));
  await assertTensorClose(T.matmul(a, b, { residual: T.transpose(r) }), R.zip([R.matmul(randn([4, 3], 1), randn([3, 5], 2)), R.permute(randn([5, 4], 4), [1, 0])], (p, q) => p + q), 'aᵀ residual');
});

test('a B view whose offset or width is not a multiple of 4 takes the scalar path', async () => {
  const b = randn([9, 40], 6);
  const a = randn([5, 9], 7);
  const view = T.slice(toTensor(b), [0, 1], [9, 37]);
  await assertTensorClose(T.matmul(toTensor(a), view), R.matmul(a, R.slice(b, [0, 1], [9, 37])), 'offset view', tol(9));
});

test('a variant the device cannot run is refused by name, never replaced', async () => {
  const v3 = { version: 'v3', tm: 8, tn: 4 } as const;
  const reason = matmulUnsupported(v3);
  if (reason) assert.throws(() => matmulRaw(T.ones([2, 2]), T.ones([2, 2]), {}, v3), (e: Error) => e.message === reason);
  else assert.is(reason, null);
  assert.is(matmulUnsupported({ version: 'v2', tm: 8, tn: 8 }), null);
});

test('matmul with autodiff applies a recorded activation', async () => {
  const a = T.param(toTensor(randn([3, 5], 8)));
  const b = toTensor(randn([5, 4], 9));
  const out = T.matmul(a, b, { activation: 'gelu' });
  assert.ok(out.node);
  assert.is(out.node!.op, 'gelu');
  await assertTensorClose(out, R.map(R.matmul(randn([3, 5], 8), randn([5, 4], 9)), R.gelu), 'gelu(a·b)', tol(5));
});

test("a Linear's weight gradient arrives contiguous, with no copy: x·Wᵀ's backward is two products and a bias sum", async () => {
  const x = T.param(toTensor(randn([2, 3, 5], 10)));
  const w = T.param(toTensor(randn([4, 5], 11)));
  const b = T.param(toTensor(randn([4], 12)));
  const seed = toTensor(randn([2, 3, 4], 13));
  const y = T.matmul(x, T.transpose(w), { bias: b });
  const engine = getEngine();
  engine.startRecording();
  try {
    T.backward(y, seed);
  } finally {
    const kernels = engine.stopRecording().commands.map((c) => (c.kind === 'dispatch' ? c.kernel.spec.name : c.kind));
    assert.not.ok(kernels.some((k) => k.startsWith('identity')), `no copy among ${kernels.join(', ')}`);
    assert.is(kernels.filter((k) => k.startsWith('matmul')).length, 2, `dx and dW: ${kernels.join(', ')}`);
  }
  assert.ok(w.grad!.isContiguous);
  const dW = R.matmul(R.permute(R.reshape(randn([2, 3, 4], 13), [6, 4]), [1, 0]), R.reshape(randn([2, 3, 5], 10), [6, 5]));
  await assertTensorClose(w.grad!, dW, 'dW = gᵀ·x');
  for (const t of [x, w, b, seed, y]) t.dispose();
});

test.run();
