// Bad input fails loudly, naming the op, the shapes and what was expected; GPU-side failures surface as
// thrown errors rather than stderr noise.
import * as T from '../ops/index.ts';
import { getEngine } from '../core/engine.ts';
import { assertThrows, suite } from './harness.ts';

const test = suite('errors');

test('shape mismatches name the op and both shapes', async () => {
  await assertThrows(() => T.add(T.zeros([2, 3]), T.zeros([4])), T.ShapeError, /^add:/, /\[2, 3\]/, /\[4\]/);
  await assertThrows(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5])), T.ShapeError, /matmul/, /3 vs 4/);
  await assertThrows(() => T.matmul(T.zeros([3]), T.zeros([3, 5])), T.ShapeError, /rank ≥ 2/);
  await assertThrows(() => T.reshape(T.zeros([2, 3]), [4, 2]), T.ShapeError, /reshape/, /\[2, 3\]/, /\[4, 2\]/);
  await assertThrows(() => T.layerNorm(T.zeros([2, 3]), T.ones([4]), T.zeros([3])), T.ShapeError, /layerNorm: weight/, /\[3\]/);
  await assertThrows(() => T.crossEntropy(T.zeros([2, 3]), T.Tensor.from(Int32Array.from([0, 1, 2]))), T.ShapeError, /labels must be \[2\]/);
  await assertThrows(() => T.sum(T.zeros([2, 3]), 2), T.ShapeError, /axis 2 is out of range/);
  await assertThrows(() => T.Tensor.from([1, 2, 3], [2, 2]), T.ShapeError, /3 values do not fill shape \[2, 2\]/);
  await assertThrows(() => T.backward(T.mul(T.param(T.ones([2])), 2), T.ones([3])), T.ShapeError, /seed has shape \[3\]/);
});

test('wrong dtypes are rejected', async () => {
  const ints = T.Tensor.from(Int32Array.from([1, 2]));
  await assertThrows(() => T.exp(ints), T.DTypeError, /exp: expects f32 or f16 input, got i32/);
  await assertThrows(() => T.add(ints, T.ones([2])), T.DTypeError, /add: operands have dtypes i32 and f32/);
  await assertThrows(() => T.matmul(T.Tensor.from(Int32Array.from([1, 2, 3, 4]), [2, 2]), T.ones([2, 2])), T.DTypeError, /matmul: expects f32 or f16 operands, got i32 and f32/);
  await assertThrows(() => T.indexSelect(T.ones([3, 2]), 0, T.Tensor.from([0, 1])), T.DTypeError, /index must be i32/);
  await assertThrows(() => T.param(ints), T.TensorError, /only f32/);
  await assertThrows(() => T.Tensor.from([1, 2.5], [2], 'i32'), T.DTypeError, /value 2\.5 at index 1 is not a 32-bit integer/);
});

test('out-of-range indices: caught on the host when known, and on the GPU otherwise', async () => {
  await assertThrows(() => T.indexSelect(T.ones([3, 2]), 0, T.Tensor.from(Int32Array.from([0, 3]))), T.IndexError, /index 3 at position 1 is outside \[0, 3\)/);
  await assertThrows(() => T.slice(T.ones([3, 2]), [0, 1], [4, 2]), T.IndexError, /outside axis 0/);
  // Indices computed on the GPU have no host copy: the kernel raises the engine's error flag instead.
  const gpuIdx = T.add(T.arange(2), 2); // [2, 3]
  const out = T.indexSelect(T.ones([3, 2]), 0, gpuIdx);
  await assertThrows(() => out.data(), T.IndexError, /indexSelect: an index is outside \[0, 3\)/);
  const labels = T.mul(T.arange(2), 5); // [0, 5]
  const loss = T.crossEntropy(T.ones([2, 3]), labels);
  await assertThrows(() => loss.item(), T.IndexError, /crossEntropy: a label is outside \[0, 3\)/);
  // The flag is cleared once reported.
  await T.sum(T.ones([4])).item();
});

test('a tensor larger than one storage binding is refused with advice, not a Dawn message', async () => {
  const limit = T.gpu().device.limits.maxStorageBufferBindingSize;
  await assertThrows(() => T.tidy(() => T.zeros([limit / 4 + 1])), T.GpuError, /fill\(f32\): 'out' is a \d+-byte buffer, over the device's \d+-byte storage binding limit; process the data in smaller batches/);
  await T.sum(T.ones([3])).item();
});

test('use after dispose names the op and the tensor', async () => {
  const t = T.ones([2, 2]);
  t.dispose();
  await assertThrows(() => T.exp(t), T.DisposedError, /exp: tensor #\d+ \[2, 2\] was used after dispose/);
  await assertThrows(() => t.data(), T.DisposedError, /data:/);
});

test('in-place writes to tensors in a recorded graph are refused', async () => {
  const p = T.param(T.ones([2]));
  await assertThrows(() => T.assign(p, 3), T.TensorError, /noGrad/);
  p.dispose();
});

test('WebGPU validation errors become GpuErrors naming the kernel', async () => {
  const engine = getEngine();
  const t = T.zeros([1]);
  const kernel = engine.kernel('test:broken', () => ({
    name: 'deliberately_broken',
    outputs: { out: 'f32' as const },
    inputs: {},
    uniforms: {},
    wgsl: '@compute @workgroup_size(1) fn main() { out[0] = undefined_symbol; }',
  }));
  await assertThrows(async () => {
    engine.dispatch(kernel, { out: t.bufferFor('test') }, {}, [1]);
    await T.sync();
  }, T.GpuError, /deliberately_broken/);
  await assertThrows(() => engine.dispatch(kernel, { out: t.bufferFor('test') }, {}, [70000]), T.GpuError, /deliberately_broken: dispatch of \[70000, 1, 1\] workgroups exceeds/);
  // The device is still usable afterwards.
  await T.sum(T.ones([3])).item();
});

test.run();
