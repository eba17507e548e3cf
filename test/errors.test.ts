// Bad input fails loudly with an error class whose message names the op, the shapes and what was expected;
// GPU-side failures (validation errors, out-of-range indices found by a kernel) surface as thrown errors; in-place
// writes that would corrupt a recorded graph are refused.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { getEngine } from '../core/engine.ts';
import { SGD } from '../nn/optim.ts';
import { assertThrows, suite } from './harness.ts';

const test = suite('errors');

test('shape mismatches are ShapeErrors naming the op and the shapes (or the axis) that do not fit', async () => {
  await assertThrows(() => T.add(T.zeros([2, 3]), T.zeros([4])), T.ShapeError, /^add: shapes \[2, 3\] and \[4\] cannot be broadcast \(axis 1: 3 vs 4\)$/);
  await assertThrows(() => T.matmul(T.zeros([2, 3]), T.zeros([4, 5])), T.ShapeError, /^matmul: inner dimensions differ: \[2, 3\] · \[4, 5\] \(3 vs 4\)$/);
  await assertThrows(() => T.matmul(T.zeros([3]), T.zeros([3, 5])), T.ShapeError, /^matmul: operands must have rank ≥ 2, got \[3\] and \[3, 5\]$/);
  await assertThrows(() => T.reshape(T.zeros([2, 3]), [4, 2]), T.ShapeError, /^reshape: cannot reshape \[2, 3\] \(size 6\) to \[4, 2\]$/);
  await assertThrows(() => T.layerNorm(T.zeros([2, 3]), T.ones([4]), T.zeros([3])), T.ShapeError, /^layerNorm: weight must be .* of shape \[3\], got \[4\]/);
  await assertThrows(() => T.crossEntropy(T.zeros([2, 3]), T.Tensor.from(Int32Array.from([0, 1, 2]))), T.ShapeError, /^crossEntropy: labels must be \[2\] for logits \[2, 3\], got \[3\]$/);
  await assertThrows(() => T.sum(T.zeros([2, 3]), 2), T.ShapeError, /^sum: axis 2 is out of range for a tensor of rank 2$/);
  await assertThrows(() => T.Tensor.from([1, 2, 3], [2, 2]), T.ShapeError, /^tensor: 3 values do not fill shape \[2, 2\] \(size 4\)$/);
  await assertThrows(() => T.backward(T.mul(T.param(T.ones([2])), 2), T.ones([3])), T.ShapeError, /^backward: seed has shape \[3\], root has \[2\]$/);
});

test('wrong dtypes are DTypeErrors naming the op and the dtypes', async () => {
  const ints = T.Tensor.from(Int32Array.from([1, 2]));
  await assertThrows(() => T.exp(ints), T.DTypeError, /^exp: expects f32 or f16 input, got i32$/);
  await assertThrows(() => T.add(ints, T.ones([2])), T.DTypeError, /^add: operands have dtypes i32 and f32/);
  await assertThrows(() => T.matmul(T.Tensor.from(Int32Array.from([1, 2, 3, 4]), [2, 2]), T.ones([2, 2])), T.DTypeError, /^matmul: expects f32 or f16 operands, got i32 and f32/);
  await assertThrows(() => T.indexSelect(T.ones([3, 2]), 0, T.Tensor.from([0, 1])), T.DTypeError, /^indexSelect: index must be i32, got f32$/);
  await assertThrows(() => T.param(ints), T.DTypeError, /^param: only f32 tensors can require grad, got i32$/);
  await assertThrows(() => T.Tensor.from([1, 2.5], [2], 'i32'), T.DTypeError, /^tensor: value 2\.5 at index 1 is not a 32-bit integer, but dtype i32 was asked for$/);
});

test('out-of-range indices are IndexErrors: thrown by the call when the indices are on the host, at readback otherwise', async () => {
  await assertThrows(() => T.indexSelect(T.ones([3, 2]), 0, T.Tensor.from(Int32Array.from([0, 3]))), T.IndexError, /index 3 at position 1 is outside \[0, 3\)/);
  await assertThrows(() => T.slice(T.ones([3, 2]), [0, 1], [4, 2]), T.IndexError, /outside axis 0/);
  // Indices computed on the GPU have no host copy: the kernel raises the engine's error flag instead.
  const gpuIdx = T.add(T.arange(2), 2); // [2, 3]
  const out = T.indexSelect(T.ones([3, 2]), 0, gpuIdx);
  await assertThrows(() => out.data(), T.IndexError, /indexSelect: an index is outside \[0, 3\)/);
  const labels = T.mul(T.arange(2), 5); // [0, 5]
  const loss = T.crossEntropy(T.ones([2, 3]), labels);
  await assertThrows(() => loss.item(), T.IndexError, /crossEntropy: a label is outside \[0, 3\)/);
  // The flag is cleared once reported: the next readback succeeds.
  assert.is(await T.sum(T.ones([4])).item(), 4);
});

test('an in-place write to an index tensor retires its host copy: bounds are checked against the values written', async () => {
  const index = T.Tensor.from(Int32Array.from([0, 5]));
  T.assign(index, T.Tensor.from(Int32Array.from([2, 1])));
  assert.equal(Array.from(await T.indexSelect(T.Tensor.from([10, 11, 12]), 0, index).data()), [12, 11]);
  T.assign(index, T.Tensor.from(Int32Array.from([0, 7])));
  await assertThrows(() => T.indexSelect(T.ones([3, 2]), 0, index).data(), T.IndexError, /indexSelect: an index is outside \[0, 3\)/);
  index.dispose();
});

test('a tensor larger than one storage binding is refused with advice, not a Dawn message', async () => {
  const limit = T.gpu().device.limits.maxStorageBufferBindingSize;
  await assertThrows(() => T.tidy(() => T.zeros([limit / 4 + 1])), T.GpuError, /fill\(f32\): 'out' is a \d+-byte buffer, over the device's \d+-byte storage binding limit; process the data in smaller batches/);
  assert.is(await T.sum(T.ones([3])).item(), 3);
});

test('use after dispose names the op and the tensor', async () => {
  const t = T.ones([2, 2]);
  t.dispose();
  await assertThrows(() => T.exp(t), T.DisposedError, /exp: tensor #\d+ \[2, 2\] was used after dispose/);
  await assertThrows(() => t.data(), T.DisposedError, /data:/);
});

test('assign to a tensor that requires grad, or from one, is refused outside noGrad', async () => {
  const p = T.param(T.ones([2]));
  await assertThrows(() => T.assign(p, 3), T.TensorError, /assign: .*noGrad/);
  await assertThrows(() => T.assign(T.zeros([2]), T.mul(p, 2)), T.TensorError, /assign: .*noGrad/);
  p.dispose();
});

test('backward through an op whose saved tensor was written in place since names the op, the tensor and the versions', async () => {
  const x = T.param(T.Tensor.from([1, 2]));
  const c = T.Tensor.from([3, 4]);
  const y = T.sum(T.mul(x, c)); // mul saves c for x's gradient
  T.noGrad(() => T.assign(c, 5));
  await assertThrows(() => T.backward(y), T.TensorError, new RegExp(`backward: tensor #${c.id} \\[2\\] \\('b'\\) was modified in place after op 'mul' saved it for backward; version 1, expected 0`));
  // A write through a view reaches the same storage, so it is caught too (exp saves its output).
  const e = T.exp(x);
  const z = T.sum(e);
  T.noGrad(() => T.tidy(() => T.assign(T.slice(e, [1], [2]), 0)));
  await assertThrows(() => T.backward(z), T.TensorError, /tensor #\d+ \[2\] \('y'\) was modified in place after op 'exp'/);
  x.dispose();
});

test('an optimizer step between a retained backward and the next backward is refused (the step wrote the saved weight)', async () => {
  const w = T.param(T.Tensor.from([1, 2]));
  const opt = new SGD([w], { lr: 0.1 });
  const y = T.sum(T.mul(w, w));
  T.backward(y, undefined, { retainGraph: true });
  opt.step();
  await assertThrows(() => T.backward(y), T.TensorError, /modified in place after op 'mul'.*version 1, expected 0/);
  opt.dispose();
  w.dispose();
});

test('WebGPU validation errors and oversized dispatches become GpuErrors naming the kernel; the device stays usable', async () => {
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
  assert.is(await T.sum(T.ones([3])).item(), 3);
});

test.run();
