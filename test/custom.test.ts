// Custom ops (ops/custom.ts): a user's WGSL kernel against a float64 reference on odd sizes, views with offsets
// and strides, a whole-kernel kernel with its own grid, i32 inputs, f16 storage through the generated accessors,
// the op's name in the profile, a backward that is itself a custom kernel, and the errors a user can cause.
// The finite-difference gradient checks of custom ops are in gradcheck.test.ts (the backward table's `custom`).
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { assertClose, assertTensorClose, assertThrows, randn, skipTest, suite, toTensor } from './harness.ts';

const test = suite('custom ops');

const cube = T.customOp({ name: 'cube', inputs: ['x'], body: 'let v = load_x(i); store(i, v * v * v);' });

test('a per-element kernel matches its float64 reference on odd sizes', async () => {
  for (const n of [1, 7, 64, 65, 257, 4099]) {
    const x = randn([n], 700 + n);
    await assertTensorClose(cube({ x: toTensor(x) }), R.map(x, (v) => v ** 3), `cube of ${n}`, { atol: 1e-5, rtol: 1e-5 });
  }
});

test('inputs that are views: an offset slice and a transposed (strided) view are read in row-major order', async () => {
  const x = randn([5, 6], 710);
  const xt = toTensor(x);
  await assertTensorClose(cube({ x: T.slice(xt, [2, 0], [4, 6]) }), R.map(R.slice(x, [2, 0], [4, 6]), (v) => v ** 3), 'slice rows 2–3');
  await assertTensorClose(cube({ x: T.transpose(xt) }), R.map(R.permute(x, [1, 0]), (v) => v ** 3), 'transpose');
});

test('a whole kernel: its own workgroup size, grid and output shape (row sums, one thread per row), i32 input', async () => {
  const rowSum = T.customOp({
    name: 'rowSum',
    inputs: ['x', 'mask'],
    uniforms: { width: 'u32' },
    output: ({ x }) => ({ shape: [x.shape[0]] }),
    wgsl: `@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.x;
  if (row >= u.n) { return; }
  var total = 0.0;
  for (var j = 0u; j < u.width; j++) {
    if (load_mask(row * u.width + j) != 0) { total += load_x(row * u.width + j); }
  }
  store(row, total);
}`,
    workgroups: (n) => [Math.ceil(n / 32)],
  });
  const [rows, width] = [37, 9];
  const x = randn([rows, width], 720);
  const mask = Int32Array.from({ length: rows * width }, (_, i) => (i % 3 === 0 ? 0 : 1));
  const got = await rowSum({ x: toTensor(x), mask: T.Tensor.from(mask, [rows, width]) }, { width }).data();
  const want = Array.from({ length: rows }, (_, r) => x.data.slice(r * width, (r + 1) * width).reduce((s, v, j) => s + (mask[r * width + j] ? v : 0), 0));
  assertClose(got, want, 'masked row sums');
});

test('a backward that is itself a custom kernel gives the composed reference gradient (SiLU)', async () => {
  const siluGrad = T.customOp({
    name: 'siluBackward',
    inputs: ['x', 'g'],
    body: 'let v = load_x(i); let s = 1.0 / (1.0 + exp(-v)); store(i, load_g(i) * s * (1.0 + v * (1.0 - s)));',
  });
  const silu = T.customOp({
    name: 'silu',
    inputs: ['x'],
    body: 'let v = load_x(i); store(i, v / (1.0 + exp(-v)));',
    backward: (g, { inputs: { x } }) => ({ x: siluGrad({ x, g }) }),
  });
  const x = T.param(toTensor(randn([3, 33], 730, 2)));
  T.backward(T.sum(silu({ x })));
  const fused = await x.grad!.data();
  x.grad!.dispose();
  x.grad = null;
  T.backward(T.sum(T.mul(x, T.sigmoid(x))));
  assertClose(fused, await x.grad!.data(), 'd silu / dx', { atol: 1e-5, rtol: 1e-4 });
  x.dispose();
});

test("the op's name is the kernel's name in T.profile", async () => {
  const x = toTensor(randn([100], 740));
  let y: T.Tensor | null = null;
  const kernels = await T.profile(() => (y = cube({ x })));
  if (kernels) assert.ok(kernels.some((k) => k.name === 'cube'), kernels.map((k) => k.name).join(', '));
  assert.ok(y !== null);
});

if (!(await T.init().then(() => T.gpu().hasFeature('shader-f16')))) skipTest(test, 'f16 storage through the accessors', "the device lacks 'shader-f16'");
else {
  test('f16 storage through the accessors: one source, read widened, stored rounded once', async () => {
    const x = randn([2, 37], 750);
    const y = cube({ x: T.cast(toTensor(x), 'f16') });
    assert.is(y.dtype, 'f16');
    await assertTensorClose(T.cast(y, 'f32'), R.map(x, (v) => Math.fround(v) ** 3), 'cube in f16', { atol: 2e-3, rtol: 2e-3 });
  });
}

test('mistakes are one clear error: no backward under grad, a missing uniform, a taken name, body and wgsl both', async () => {
  const p = T.param(T.ones([3]));
  await assertThrows(() => cube({ x: p }), T.TensorError, /cube: an input requires grad and this custom op has no backward/);
  assert.is(T.noGrad(() => cube({ x: p })).shape.length, 1);
  const scale = T.customOp({ name: 'scale', inputs: ['x'], uniforms: { s: 'f32' }, body: 'store(i, u.s * load_x(i));' });
  await assertThrows(() => scale({ x: T.ones([2]) }), TypeError, /scale: uniform 's' was not given a number/);
  await assertThrows(() => T.customOp({ name: 'bad', inputs: ['x'], uniforms: { n: 'u32' }, body: '' }), TypeError, /'n' is taken/);
  await assertThrows(() => T.customOp({ name: 'bad', inputs: ['x'], body: '', wgsl: '' }), TypeError, /either body or wgsl/);
  p.dispose();
});

test.run();
