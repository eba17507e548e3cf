// End to end: a 2-layer MLP trained with plain SGD on a fixed seeded task lowers its loss.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { suite } from './harness.ts';

const test = suite('mlp');

test('a 2-layer MLP learns a seeded 4-class spiral-like task', async () => {
  T.manualSeed(123);
  const gen = new T.Generator(99);
  const n = 256;
  // Labels from the quadrant of the first two input features: a task a linear model cannot fit exactly.
  const x = T.keep(T.randNormal([n, 8], 0, 1, gen));
  const labels = T.keep(T.tidy(() => {
    const cols = T.cast(T.gt(x, 0), 'i32');
    return T.reshape(T.add(T.mul(T.slice(cols, [0, 0], [n, 1]), 2), T.slice(cols, [0, 1], [n, 2])), [n]);
  }));
  const w1 = T.param(T.mul(T.randNormal([8, 32]), 0.3));
  const b1 = T.param(T.zeros([32]));
  const w2 = T.param(T.mul(T.randNormal([32, 4]), 0.3));
  const b2 = T.param(T.zeros([4]));
  const params = [w1, b1, w2, b2];
  const losses: number[] = [];
  for (let step = 0; step < 300; step++) {
    const loss = T.tidy(() => {
      const h = T.matmul(x, w1, { bias: b1, activation: 'relu' });
      const l = T.crossEntropy(T.matmul(h, w2, { bias: b2 }), labels);
      T.backward(l);
      T.noGrad(() => {
        for (const p of params) {
          T.assign(p, T.sub(p, T.mul(p.grad!, 0.5)));
          p.grad!.dispose();
          p.grad = null;
        }
      });
      return l;
    });
    if (step % 50 === 0 || step === 299) losses.push(await loss.item());
    loss.dispose();
  }
  const [first, last] = [losses[0], losses[losses.length - 1]];
  assert.ok(first > 1.2, `initial loss ${first} should be near ln 4`);
  assert.ok(last < 0.25, `final loss ${last} should fall below 0.25 (losses ${losses.map((l) => l.toFixed(3)).join(', ')})`);
  for (const t of [...params, x, labels]) t.dispose();
});

test.run();
