// The Dawn lifetime crash: if the object from webgpu's create() is garbage-collected while its device
// lives, Dawn touches freed memory after a few ms of busy JavaScript between submits. This test forces
// collections and busy work between many submits and readbacks; an engine that does not hold the instance
// aborts, segfaults or hangs here.
import * as assert from 'uvu/assert';
import * as T from '../ops/index.ts';
import { suite } from './harness.ts';

const test = suite('robustness');

function busy(ms: number): number {
  const until = performance.now() + ms;
  let junk = 0;
  while (performance.now() < until) junk += Math.sqrt(junk + 1) % 7;
  return junk;
}

test('survives forced GC and busy JavaScript between 150 submits and readbacks', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'run with node --expose-gc (npm test does)');
  let total = 0;
  for (let i = 0; i < 150; i++) {
    const v = T.tidy(() => T.sum(T.mul(T.add(T.fill([257], i), 1), 2)));
    if (i % 10 === 0) gc!();
    busy(i % 3 === 0 ? 5 : 1);
    total += await v.item();
    v.dispose();
  }
  // Σ_i 257·2·(i + 1) for i < 150
  assert.is(total, 257 * 2 * (150 * 151) / 2);
});

test.run();
