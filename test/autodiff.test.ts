// Autodiff semantics beyond single rules: accumulation, views, noGrad, detach, seeds, graph lifetime.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { SGD } from '../nn/optim.ts';
import { assertClose, assertThrows, suite } from './harness.ts';

const test = suite('autodiff');

test('a tensor used twice accumulates both gradients', async () => {
  const x = T.param(T.Tensor.from([0.5, -1.5, 2]));
  const y = T.sum(T.add(T.mul(x, x), x)); // d/dx = 2x + 1
  T.backward(y);
  assertClose(await x.grad!.data(), [2, -2, 5], 'x² + x');
  x.dispose();
});

test('gradients of views flow to their base', async () => {
  const x = T.param(T.Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]));
  const v = T.slice(T.transpose(x), [1, 0], [3, 2]); // rows 1..2 of xᵀ: x[:, 1:]
  T.backward(T.sum(T.mul(v, v)));
  assertClose(await x.grad!.data(), [0, 4, 6, 0, 10, 12], 'grad through transpose + slice');
  x.dispose();
});

test('grads accumulate across backward calls until reset; retainGraph allows a second pass', async () => {
  const x = T.param(T.Tensor.from([1, 2]));
  const y = T.sum(T.mul(x, 3));
  T.backward(y, undefined, { retainGraph: true });
  T.backward(y);
  assertClose(await x.grad!.data(), [6, 6], 'two passes');
  await assertThrows(() => T.backward(y), T.TensorError, /already freed/);
  x.dispose();
});

test('noGrad and detach stop recording; backward of a non-scalar needs a seed', async () => {
  const x = T.param(T.Tensor.from([1, 2, 3]));
  const y = T.noGrad(() => T.mul(x, 2));
  assert.is(y.requiresGrad, false);
  assert.is(T.detach(x).requiresGrad, false);
  const z = T.mul(x, x);
  await assertThrows(() => T.backward(z), T.ShapeError, /seed/, /\[3\]/);
  T.backward(z, T.Tensor.from([1, 0, -1]));
  assertClose(await x.grad!.data(), [2, 0, -6], 'seeded');
  await assertThrows(() => T.backward(T.Tensor.from([1])), T.TensorError, /does not require grad/);
  x.dispose();
});

test('disposing the outputs of an abandoned forward pass frees its saved tensors', async () => {
  const x = T.param(T.randNormal([64, 64]));
  const before = T.memory().liveBytes;
  const out = T.tidy(() => T.sum(T.exp(T.matmul(x, x))));
  assert.ok(T.memory().liveBytes > before, 'saved tensors are alive while the graph is');
  out.dispose();
  assert.is(T.memory().liveBytes, before);
  x.dispose();
});

test('in-place writes backward does not read are allowed: an operand no op saved, and optimizer steps after backward', async () => {
  const x = T.param(T.Tensor.from([1, 2]));
  const c = T.Tensor.from([3, 4]);
  const y = T.sum(T.mul(T.add(x, c), x)); // add saves only shapes: c is not read by backward
  T.noGrad(() => T.assign(c, 10));
  assert.is(c.version, 1);
  T.backward(y); // d/dx (x + c)·x = 2x + c, with the c the forward used
  assertClose(await x.grad!.data(), [5, 8], 'gradient of the values the forward used');
  // A training loop: forward, backward, step (which writes x in place), and again.
  const opt = new SGD([x], { lr: 0.5 });
  opt.step();
  assert.is(x.version, 1, 'the step bumps the parameter');
  assertClose(await x.data(), [-1.5, -2], 'stepped');
  opt.zeroGrad();
  T.backward(T.sum(T.mul(x, x)));
  assertClose(await x.grad!.data(), [-3, -4], 'second step');
  opt.step();
  opt.dispose();
  x.dispose();
  c.dispose();
});

test('adopt swaps storage without writing: a graph recorded before it still backpropagates the old values', async () => {
  const x = T.param(T.Tensor.from([1, 2]));
  const y = T.sum(T.mul(x, x));
  x.adopt(T.Tensor.from([10, 20]));
  T.backward(y);
  assertClose(await x.grad!.data(), [2, 4], '2x of the forward');
  x.dispose();
});

test.run();
