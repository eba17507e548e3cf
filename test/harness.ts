// Shared test helpers: a counting wrapper around uvu suites, a seeded host RNG, tolerance checks, and
// upload/download between float64 reference arrays and tensors.
import { suite as uvuSuite, type Test } from 'uvu';
import * as T from '../ops/index.ts';
import { Nd } from '../kernels/reference.ts';
import { mulberry32 } from '../core/random.ts';

export const counts = { passed: 0, failed: 0, skipped: [] as string[] };

/** The oracle fixtures from openai/CLIP (see test/fixtures/README.md); tests run from the repository root. */
export const FIXTURES = 'test/fixtures';

/** A uvu suite whose tests are counted for the closing "N passed, N failed" line. */
export function suite(name: string): Test {
  const s = uvuSuite(name);
  const counted = ((title: string, fn: (ctx: unknown) => unknown) =>
    s(title, async (ctx) => {
      try {
        await fn(ctx);
        counts.passed++;
      } catch (e) {
        counts.failed++;
        throw e;
      }
    })) as Test;
  return Object.assign(counted, { run: s.run, before: s.before, after: s.after, only: s.only, skip: s.skip });
}

/**
 * Registers a test this device cannot run (a kernel variant it lacks the features for): reported as skipped
 * with the reason in the closing summary, never run as something else and never counted as passed.
 */
export function skipTest(test: Test, title: string, reason: string): void {
  counts.skipped.push(`${title}: ${reason}`);
  test.skip(`${title} (skipped: ${reason})`, () => {});
}

/** A small seeded PRNG, so every test input is random but reproducible. */
export const rng = mulberry32;

/** A random normal Nd (never all-zero, never symmetric). */
export function randn(shape: number[], seed: number, scale = 1): Nd {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i++) data[i] = scale * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return new Nd(shape, data);
}

export function randInt(n: number, high: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r() * high));
}

/** Uploads an Nd as an f32 tensor. */
export const toTensor = (x: Nd): T.Tensor => T.Tensor.from(Float32Array.from(x.data), x.shape);

/** Downloads a tensor as an Nd. */
export async function toNd(t: T.Tensor): Promise<Nd> {
  return new Nd([...t.shape], Float64Array.from(await t.data()));
}

/**
 * Asserts |actual − expected| ≤ atol + rtol·|expected| elementwise (NaNs must match), naming the first
 * offending element.
 */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, { atol = 1e-5, rtol = 1e-5 } = {}): void {
  if (actual.length !== expected.length) throw new Error(`${what}: ${actual.length} values, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      throw new Error(`${what}: element ${i} is ${a}, expected ${e} (atol ${atol}, rtol ${rtol})`);
    }
  }
}

export async function assertTensorClose(t: T.Tensor, expected: Nd, what: string, tol?: { atol?: number; rtol?: number }): Promise<void> {
  if (t.shape.join() !== expected.shape.join()) throw new Error(`${what}: shape [${t.shape}], expected [${expected.shape}]`);
  assertClose(await t.data(), expected.data, what, tol);
}

/** Asserts that fn throws an error of class `type` whose message matches every pattern. */
export async function assertThrows(fn: () => unknown, type: new (...args: never[]) => Error, ...patterns: RegExp[]): Promise<void> {
  let thrown: unknown;
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  if (!(thrown instanceof type)) throw new Error(`expected ${type.name}, got ${thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown)}`);
  for (const p of patterns) if (!p.test(thrown.message)) throw new Error(`error message "${thrown.message}" does not match ${p}`);
}
