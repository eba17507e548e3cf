// Autodiff semantics beyond single rules: accumulation, views, noGrad, detach, seeds, graph lifetime.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
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

test.run();
