// Creation kernels: constant fill, arange, and seeded random numbers generated on the GPU.
//
// Randomness is counter-based (Philox4x32-10): element i of a draw is a pure function of (seed, counter + i),
// so a Generator's whole state is two numbers, results do not depend on workgroup scheduling, and a
// checkpoint that stores {seed, counter} resumes the exact stream.
import type { DType } from '../core/dtype.ts';
import { getEngine } from '../core/engine.ts';
import { elementwise } from './elementwise.ts';
import { grid, perItemEntry } from './wgsl.ts';
import { checkShape, sizeOf, type Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';

const WG = 256;

function fillKernel(dtype: 'f32' | 'i32') {
  return getEngine().kernel(`fill:${dtype}`, () => ({
    name: `fill(${dtype})`,
    outputs: { out: dtype },
    inputs: {},
    uniforms: { n: 'u32', start: dtype, step: dtype } as const,
    wgsl: `
${perItemEntry(WG, 'i')}
  if (i < u.n) { out[i] = u.start + ${dtype}(i) * u.step; }
}`,
  }));
}

function affineFill(shape: Shape, start: number, step: number, dtype: DType): Tensor {
  checkShape('fill', shape);
  if (dtype === 'f16') {
    // Filled in f32, then rounded to f16 by the cast kernel.
    const wide = affineFill(shape, start, step, 'f32');
    const out = elementwise('toF16', [wide]);
    wide.dispose();
    return out;
  }
  const out = Tensor.empty(shape, dtype);
  const n = out.size;
  if (n > 0) getEngine().dispatch(fillKernel(dtype), { out: out.bufferFor('fill') }, { n, start, step }, grid(Math.ceil(n / WG)));
  return out;
}

export const fill = (shape: Shape, value: number, dtype: DType = 'f32'): Tensor => affineFill(shape, value, 0, dtype);
export const zeros = (shape: Shape, dtype: DType = 'f32'): Tensor => fill(shape, 0, dtype);
export const ones = (shape: Shape, dtype: DType = 'f32'): Tensor => fill(shape, 1, dtype);
export const zerosLike = (t: Tensor): Tensor => fill(t.shape, 0, t.dtype);
export const onesLike = (t: Tensor): Tensor => fill(t.shape, 1, t.dtype);

/** start, start + step, … (fewer than (end - start) / step values), like numpy.arange. */
export function arange(start: number, end?: number, step = 1, dtype: DType = 'i32'): Tensor {
  if (end === undefined) [start, end] = [0, start];
  if (step === 0) throw new RangeError('arange: step must not be 0');
  const n = Math.max(0, Math.ceil((end - start) / step));
  return affineFill([n], start, step, dtype);
}

/** A seeded stream of random numbers: {seed, counter} is its whole state. */
export class Generator {
  constructor(
    public seed = 0,
    public counter = 0,
  ) {}
  /** Reserves `n` values of the stream; returns the counter they start at. */
  take(n: number): number {
    const at = this.counter;
    this.counter += Math.ceil(n / 4) * 4;
    return at;
  }
  /** The seed and how many values were drawn: what a checkpoint saves to resume the stream exactly. */
  state(): { seed: number; counter: number } {
    return { seed: this.seed, counter: this.counter };
  }
}

export const defaultGenerator = new Generator(0);

/** Reseeds the default generator. */
export function manualSeed(seed: number): void {
  defaultGenerator.seed = seed >>> 0;
  defaultGenerator.counter = 0;
}

type Distribution = 'uniform' | 'normal';

function randomKernel(dist: Distribution) {
  const transform =
    dist === 'uniform'
      ? 'u.a + (u.b - u.a) * unit(r.x)'
      : // Box–Muller on two uniforms; 1 - unit() keeps the log argument in (0, 1].
        'u.a + u.b * sqrt(-2.0 * log(1.0 - unit(r.x))) * cos(6.283185307179586 * unit(r.y))';
  return getEngine().kernel(`random:${dist}`, () => ({
    name: `random_${dist}`,
    outputs: { out: 'f32' as const },
    inputs: {},
    uniforms: { n: 'u32', seed: 'u32', counter: 'u32', a: 'f32', b: 'f32' } as const,
    wgsl: `
fn mulhilo(a: u32, b: u32) -> vec2u {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return vec2u(hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}
// Philox4x32-10 (Salmon et al., 2011).
fn philox(counter: vec4u, key0: vec2u) -> vec4u {
  var c = counter;
  var k = key0;
  for (var round = 0; round < 10; round++) {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k += vec2u(0x9E3779B9u, 0xBB67AE85u);
  }
  return c;
}
fn unit(x: u32) -> f32 { return f32(x >> 8u) * (1.0 / 16777216.0); }
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  let r = philox(vec4u(u.counter + i, 0u, 0u, 0u), vec2u(u.seed, 0x5EEDu));
  out[i] = ${transform};
}`,
  }));
}

function random(dist: Distribution, shape: Shape, a: number, b: number, gen: Generator): Tensor {
  checkShape(`random_${dist}`, shape);
  const out = Tensor.empty(shape);
  const n = sizeOf(shape);
  const counter = gen.take(n);
  if (n > 0) {
    getEngine().dispatch(
      randomKernel(dist),
      { out: out.bufferFor(`random_${dist}`) },
      { n, seed: gen.seed, counter: counter >>> 0, a, b },
      grid(Math.ceil(n / WG)),
    );
  }
  return out;
}

/** Uniform in [low, high). */
export const randUniform = (shape: Shape, low = 0, high = 1, gen = defaultGenerator): Tensor => random('uniform', shape, low, high, gen);
/** Normal with the given mean and standard deviation. */
export const randNormal = (shape: Shape, mean = 0, std = 1, gen = defaultGenerator): Tensor => random('normal', shape, mean, std, gen);
