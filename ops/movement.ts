// Movement ops: views that only rewrite shape/strides/offset (reshape of contiguous data, permute, expand,
// slice, squeeze, unsqueeze) and the copies that materialise them (contiguous, concat, stack, pad).
// Copies are the elementwise `identity` op writing into a (possibly strided) destination view.
import { IndexError, ShapeError, TensorError, fmtShape } from '../core/errors.ts';
import { normalizeAxis, sizeOf, type Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { fill, zeros } from '../kernels/creation.ts';
import { elementwise } from '../kernels/elementwise.ts';
import { sumToRaw } from '../kernels/reduce.ts';
import { isGradEnabled, recorder, type Rules } from './tape.ts';

export interface MovementOps {
  reshape: { shape: Shape };
  permute: { dims: number[] };
  expand: { shape: Shape };
  slice: { shape: Shape; begin: number[] };
  copy: Record<string, never>;
  concat: { axis: number; sizes: number[] };
  pad: { begin: number[]; shape: Shape };
}
const recordOp = recorder<MovementOps>();

/**
 * Strides for viewing `t` with `shape` without copying, or null when its layout does not allow it
 * (PyTorch's computeStride: old axes are grouped into runs that are contiguous with each other, and each
 * run must be exactly covered by a run of new axes).
 */
function viewStrides(t: Tensor, shape: Shape): number[] | null {
  if (t.rank === 0) return shape.map(() => 1);
  const strides = new Array<number>(shape.length).fill(1);
  let viewD = shape.length - 1;
  let chunkBaseStride = t.strides[t.rank - 1];
  let tensorNumel = 1;
  let viewNumel = 1;
  for (let d = t.rank - 1; d >= 0; d--) {
    tensorNumel *= t.shape[d];
    const runEnds = d === 0 || (t.shape[d - 1] !== 1 && t.strides[d - 1] !== tensorNumel * chunkBaseStride);
    if (!runEnds) continue;
    while (viewD >= 0 && (viewNumel < tensorNumel || shape[viewD] === 1)) {
      strides[viewD] = viewNumel * chunkBaseStride;
      viewNumel *= shape[viewD];
      viewD--;
    }
    if (viewNumel !== tensorNumel) return null;
    if (d > 0) {
      chunkBaseStride = t.strides[d - 1];
      tensorNumel = 1;
      viewNumel = 1;
    }
  }
  return viewD === -1 ? strides : null;
}

/** Reshape; -1 infers one dimension. A view when the layout allows, otherwise a copy. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  x.bufferFor('reshape');
  const known = sizeOf(shape.filter((d) => d !== -1));
  const inferred = shape.filter((d) => d === -1).length;
  if (inferred > 1 || (inferred === 1 && (known === 0 || x.size % known !== 0))) {
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (size ${x.size}) to ${fmtShape(shape)}`);
  }
  const full = shape.map((d) => (d === -1 ? x.size / known : d));
  if (sizeOf(full) !== x.size || full.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (size ${x.size}) to ${fmtShape(shape)}`);
  }
  const strides = x.size === 0 ? null : viewStrides(x, full);
  let out: Tensor;
  if (strides) out = x.view(full, strides);
  else {
    const c = elementwise('identity', [x]);
    out = c.view(full);
    c.dispose();
  }
  recordOp('reshape', [x], out, { shape: x.shape });
  return out;
}

/** A view with a new axis of size 1 at `axis`. */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis('unsqueeze', axis, x.rank + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}

/** A view without the size-1 axis `axis` (every size-1 axis when omitted). */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined) return reshape(x, x.shape.filter((d) => d !== 1));
  const a = normalizeAxis('squeeze', axis, x.rank);
  if (x.shape[a] !== 1) throw new ShapeError(`squeeze: axis ${axis} of ${fmtShape(x.shape)} has size ${x.shape[a]}, not 1`);
  return reshape(x, x.shape.filter((_, i) => i !== a));
}

/** Reorders axes: out.shape[i] = x.shape[dims[i]]. Always a view. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((a) => normalizeAxis('permute', a, x.rank));
  if (d.length !== x.rank || new Set(d).size !== d.length) {
    throw new ShapeError(`permute: [${dims.join(', ')}] is not a permutation of the ${x.rank} axes of ${fmtShape(x.shape)}`);
  }
  const out = x.view(d.map((a) => x.shape[a]), d.map((a) => x.strides[a]));
  recordOp('permute', [x], out, { dims: d });
  return out;
}

/** Swaps two axes (the last two by default). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const dims = [...Array(x.rank).keys()];
  const i = normalizeAxis('transpose', a, x.rank);
  const j = normalizeAxis('transpose', b, x.rank);
  [dims[i], dims[j]] = [dims[j], dims[i]];
  return permute(x, dims);
}

/** Broadcasts size-1 axes (and new leading axes) to `shape` with stride 0. Always a view. */
export function expand(x: Tensor, shape: Shape): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new ShapeError(`expand: cannot expand ${fmtShape(x.shape)} to fewer axes ${fmtShape(shape)}`);
  const strides = shape.map((d, i) => {
    if (i < lead) return 0;
    const s = x.shape[i - lead];
    if (s === d) return x.strides[i - lead];
    if (s === 1) return 0;
    throw new ShapeError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)} (axis ${i}: ${s} vs ${d})`);
  });
  const out = x.view(shape, strides);
  recordOp('expand', [x], out, { shape: x.shape });
  return out;
}

/** A range along each axis: starts[i] ≤ index < ends[i] (negative values count from the end). A view. */
export function slice(x: Tensor, starts: readonly number[], ends?: readonly (number | undefined)[]): Tensor {
  if (starts.length > x.rank) throw new ShapeError(`slice: ${starts.length} starts for a tensor of rank ${x.rank}`);
  const begin = x.shape.map((d, i) => {
    const s = starts[i] ?? 0;
    return s < 0 ? s + d : s;
  });
  const end = x.shape.map((d, i) => {
    const e = ends?.[i] ?? d;
    return e < 0 ? e + d : e;
  });
  x.shape.forEach((d, i) => {
    if (begin[i] < 0 || end[i] > d || begin[i] > end[i]) {
      throw new IndexError(`slice: range [${starts[i] ?? 0}, ${ends?.[i] ?? d}) is outside axis ${i} of ${fmtShape(x.shape)}`);
    }
  });
  const offset = x.offset + begin.reduce((acc, b, i) => acc + b * x.strides[i], 0);
  const out = x.view(end.map((e, i) => e - begin[i]), x.strides, offset);
  recordOp('slice', [x], out, { shape: x.shape, begin });
  return out;
}

/** `x[..., start:end, ...]` along one axis. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  const a = normalizeAxis('narrow', axis, x.rank);
  const starts = x.shape.map((_, i) => (i === a ? start : 0));
  const ends = x.shape.map((d, i) => (i === a ? start + length : d));
  return slice(x, starts, ends);
}

/** x itself when already contiguous (as a new view), otherwise a contiguous copy. */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous) return x.view(x.shape, x.strides);
  const out = elementwise('identity', [x]);
  recordOp('copy', [x], out, {});
  return out;
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('concat: needs at least one tensor');
  const a = normalizeAxis('concat', axis, xs[0].rank);
  for (const t of xs) {
    if (t.rank !== xs[0].rank || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i]) || t.dtype !== xs[0].dtype) {
      throw new ShapeError(`concat: ${xs.map((u) => `${fmtShape(u.shape)} ${u.dtype}`).join(', ')} differ outside axis ${a}`);
    }
  }
  const sizes = xs.map((t) => t.shape[a]);
  const shape = xs[0].shape.map((d, i) => (i === a ? sizes.reduce((p, q) => p + q, 0) : d));
  const out = Tensor.empty(shape, xs[0].dtype);
  let at = 0;
  for (const t of xs) {
    const dst = out.view(t.shape, out.strides, out.offset + at * out.strides[a]);
    elementwise('identity', [t], dst);
    dst.dispose();
    at += t.shape[a];
  }
  recordOp('concat', xs, out, { axis: a, sizes });
  return out;
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  const a = normalizeAxis('stack', axis, (xs[0]?.rank ?? 0) + 1);
  const parts = xs.map((t) => unsqueeze(t, a));
  const out = concat(parts, a);
  for (const p of parts) p.dispose();
  return out;
}

/** Pads with a constant: pads[i] = [before, after] for axis i (missing axes are not padded). */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  if (pads.length > x.rank) throw new ShapeError(`pad: ${pads.length} pad pairs for a tensor of rank ${x.rank}`);
  const p = x.shape.map((_, i) => pads[i] ?? ([0, 0] as const));
  if (p.some(([b, e]) => b < 0 || e < 0 || !Number.isInteger(b) || !Number.isInteger(e))) throw new ShapeError(`pad: pads must be non-negative integers`);
  const shape = x.shape.map((d, i) => d + p[i][0] + p[i][1]);
  const out = fill(shape, value, x.dtype);
  const interior = out.view(x.shape, out.strides, p.reduce((acc, [b], i) => acc + b * out.strides[i], 0));
  elementwise('identity', [x], interior);
  interior.dispose();
  recordOp('pad', [x], out, { begin: p.map(([b]) => b), shape: x.shape });
  return out;
}

/**
 * Writes src (broadcast to dst's shape) into dst's storage, in place. Autodiff does not record writes, so this
 * is for optimizer updates and buffers: it refuses to write a tensor that requires grad outside noGrad(), and
 * bumps dst's version so that backward refuses an op that saved dst before the write.
 */
export function assign(dst: Tensor, src: Tensor | number): void {
  if (isGradEnabled() && (dst.requiresGrad || (src instanceof Tensor && src.requiresGrad))) {
    throw new TensorError('assign: in-place writes to tensors that require grad must run under noGrad()');
  }
  if (src instanceof Tensor && src.storage === dst.storage) {
    const copy = elementwise('identity', [src]);
    elementwise('identity', [copy], dst);
    copy.dispose();
  } else elementwise('identity', [src], dst);
  dst.bumpVersion();
}

export const movementRules: Rules<MovementOps> = {
  reshape: (g, { shape }) => [reshape(g, shape)],
  permute: (g, { dims }) => [permute(g, dims.map((_, i) => dims.indexOf(i)))],
  expand: (g, { shape }) => [sumToRaw(g, shape)],
  slice: (g, { shape, begin }) => {
    const dx = zeros(shape, g.dtype);
    const window = dx.view(g.shape, dx.strides, begin.reduce((acc, b, i) => acc + b * dx.strides[i], 0));
    elementwise('identity', [g], window);
    return [dx];
  },
  copy: (g) => [g],
  concat: (g, { axis, sizes }) => {
    let at = 0;
    return sizes.map((n) => narrow(g, axis, (at += n) - n, n));
  },
  pad: (g, { begin, shape }) => [slice(g, begin, shape.map((d, i) => begin[i] + d))],
};
