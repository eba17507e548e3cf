// Shape arithmetic shared by tensors and kernels: sizes, strides, broadcasting, axis normalisation.
import { ShapeError, fmtShape } from './errors.ts';

export type Shape = readonly number[];

export const sizeOf = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

export function contiguousStrides(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

export const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** NumPy broadcasting: align right, each pair equal or one of them 1. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      if (s[i] === out[o] || s[i] === 1) continue;
      if (out[o] !== 1) {
        throw new ShapeError(`${op}: shapes ${shapes.map(fmtShape).join(' and ')} cannot be broadcast (axis ${o}: ${out[o]} vs ${s[i]})`);
      }
      out[o] = s[i];
    }
  }
  return out;
}

export function normalizeAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new ShapeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  return a;
}

export function normalizeAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = list.map((a) => normalizeAxis(op, a, rank));
  if (new Set(out).size !== out.length) throw new ShapeError(`${op}: repeated axis in [${list.join(', ')}]`);
  return out.sort((a, b) => a - b);
}

export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${op}: invalid shape ${fmtShape(shape)} (dimensions must be non-negative integers)`);
  }
}

/**
 * Strides that read a tensor of `shape` / `strides` as the (broadcast) shape `target`: 0 along the axes it is
 * broadcast over (missing leading axes and axes of extent 1), its own stride elsewhere.
 */
export function broadcastStridesTo(shape: readonly number[], strides: readonly number[], target: readonly number[]): number[] {
  const lead = target.length - shape.length;
  return target.map((_, i) => (i < lead || shape[i - lead] === 1 ? 0 : strides[i - lead]));
}
