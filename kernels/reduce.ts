// Reductions over any set of axes: sum (and mean through a fused scale), max, min, argmax, argmin; on f32, i32
// and f16 (read as f32, accumulated in f32, rounded once to an f16 result).
//
// The input is viewed as [outer, R, inner] where R is the product of the reduced axes. That view exists
// without a copy when the reduced axes are adjacent in a contiguous tensor; otherwise the tensor is permuted
// (reduced axes last) and materialised once. One thread owns one output and walks R with stride `inner`, so
// last-axis reductions read rows and first-axis reductions (bias gradients) read coalesced columns.
// When there are few outputs but long rows (a full sum), R is split into chunks in a first pass and the
// chunk results are reduced again: a thread per output alone would leave the GPU idle.
import { DTypeError } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { F32_MAX, grid, perItemEntry } from './wgsl.ts';
import type { DType } from '../core/dtype.ts';
import { sizeOf } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';

export type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';

const WG = 64;
const CHUNK = 256; // elements per thread in the first pass of a split reduction

const INIT: Record<ReduceOp, Record<'f32' | 'i32', string>> = {
  sum: { f32: '0.0', i32: '0' },
  max: { f32: `-${F32_MAX}`, i32: '-2147483647 - 1' },
  argmax: { f32: `-${F32_MAX}`, i32: '-2147483647 - 1' },
  min: { f32: F32_MAX, i32: '2147483647' },
  argmin: { f32: F32_MAX, i32: '2147483647' },
};

/**
 * One pass over [outer, R, inner]. f16 input is read widened to f32 (`f32(x[at])`) and accumulated in f32; an
 * f16 output is rounded once at the store (`out_t(…)`). The first pass of a split f16 reduction writes f32
 * partials, so the chunks are not rounded on the way.
 */
function reduceKernel(op: ReduceOp, inType: DType, outType: DType) {
  const acc = inType === 'i32' ? 'i32' : 'f32';
  const isArg = op === 'argmax' || op === 'argmin';
  const better = op === 'max' || op === 'argmax' ? '>' : '<';
  const update =
    op === 'sum'
      ? 'acc += v;'
      : isArg
        ? `if (v ${better} acc || (v != v && acc == acc)) { acc = v; best = r; }` // the first NaN wins, like PyTorch
        : `if (v ${better} acc || v != v) { acc = v; }`;
  const result = isArg ? 'i32(best)' : op === 'sum' && acc === 'f32' ? 'acc * u.scale' : 'acc';
  const source = `
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let per = u.chunks * u.inner;
  let o = t / per;
  let c = (t % per) / u.inner;
  let i = t % u.inner;
  let r0 = c * u.chunkLen;
  let r1 = min(u.R, r0 + u.chunkLen);
  var acc: ${acc} = ${INIT[op][acc]};
  var best = r0;
  var at = u.off + (o * u.R + r0) * u.inner + i;
  for (var r = r0; r < r1; r++) {
    let v = ${acc}(x[at]);
    ${update}
    at += u.inner;
  }
  out[t] = out_t(${result});
}`;
  return getEngine().kernel(`reduce:${op}:${inType}:${outType}`, () => ({
    name: `${op}(${inType}${outType !== inType ? ` → ${outType}` : ''})`,
    outputs: { out: isArg ? ('i32' as const) : outType },
    inputs: { x: inType },
    uniforms: { total: 'u32', R: 'u32', inner: 'u32', chunks: 'u32', chunkLen: 'u32', off: 'u32', scale: 'f32' } as const,
    wgsl: source,
  }));
}

/**
 * Reduces a contiguous [outer, R, inner] view of x (starting at x.offset) into a contiguous [outer * inner]
 * of `dtype` (x's own dtype, or f32 for the partials of an f16 reduction).
 */
function reduce3(op: ReduceOp, x: Tensor, outer: number, R: number, inner: number, scale: number, dtype: DType = x.dtype): Tensor {
  const isArg = op === 'argmax' || op === 'argmin';
  const outputs = outer * inner;
  const split = !isArg && R > 4 * CHUNK && outputs < 8192;
  const chunks = split ? Math.ceil(R / CHUNK) : 1;
  const chunkLen = split ? CHUNK : Math.max(R, 1);
  const passType = split && dtype === 'f16' ? 'f32' : dtype;
  const out = Tensor.empty([outer * chunks * inner], isArg ? 'i32' : passType);
  const total = outer * chunks * inner;
  getEngine().dispatch(
    reduceKernel(op, x.dtype, passType),
    { out: out.bufferFor(op), x: x.bufferFor(op) },
    { total, R, inner, chunks, chunkLen, off: x.offset, scale: split ? 1 : scale },
    grid(Math.ceil(total / WG)),
  );
  if (!split) return out;
  const rest = reduce3(op, out, outer, chunks, inner, scale, dtype);
  out.dispose();
  return rest;
}

/**
 * The raw reduction (no autodiff); `scale` multiplies a sum (mean = sum with scale 1/R). A float reduction may
 * store its result in another float `dtype` (it accumulates in f32 either way): an f16 gradient summed into an
 * f32 bias's gradient needs no cast after.
 */
export function reduceRaw(op: ReduceOp, x: Tensor, axes: number[], keepDims: boolean, scale = 1, dtype: DType = x.dtype): Tensor {
  if (dtype !== x.dtype && (x.dtype === 'i32' || dtype === 'i32')) throw new DTypeError(`${op}: an ${x.dtype} input gives an ${x.dtype} result, not ${dtype}`);
  x.bufferFor(op);
  if (op === 'sum' && x.dtype === 'i32' && scale !== 1) throw new DTypeError(`mean: expects f32 input, got i32`);
  const rank = x.rank;
  const keptShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outShape = keepDims ? keptShape : x.shape.filter((_, i) => !axes.includes(i));
  const R = sizeOf(axes.map((a) => x.shape[a]));
  const adjacent = axes.every((a, i) => i === 0 || a === axes[i - 1] + 1);
  let src = x;
  let outer: number;
  let inner: number;
  if (x.isContiguous && adjacent && axes.length > 0) {
    outer = sizeOf(x.shape.slice(0, axes[0]));
    inner = sizeOf(x.shape.slice(axes[axes.length - 1] + 1));
  } else {
    const kept = [...Array(rank).keys()].filter((i) => !axes.includes(i));
    const dims = [...kept, ...axes];
    const permuted = x.view(dims.map((d) => x.shape[d]), dims.map((d) => x.strides[d]));
    src = contiguousCopy(permuted);
    permuted.dispose();
    outer = sizeOf(kept.map((i) => x.shape[i]));
    inner = 1;
  }
  const flat = reduce3(op, src, outer, R, inner, scale, op === 'argmax' || op === 'argmin' ? x.dtype : dtype);
  if (src !== x) src.dispose();
  const out = new Tensor(flat.storage.retain(), outShape, flat.dtype);
  flat.dispose();
  return out;
}

/** Sums a broadcast gradient back to the shape of the operand it was broadcast from (records nothing). */
export function sumToRaw(g: Tensor, shape: readonly number[]): Tensor {
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  if (axes.length === 0) return g.rank === shape.length ? g.view(g.shape, g.strides) : contiguousCopy(g).view(shape);
  const summed = reduceRaw('sum', g, axes, true);
  const out = summed.view(shape);
  summed.dispose();
  return out;
}
