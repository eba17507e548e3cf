// Differentiable elementwise math: thin wrappers that run the elementwise template and record the op, with
// their backward rules. Comparisons and casts are not differentiable and record nothing.
import type { DType } from '../core/dtype.ts';
import type { Shape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { elementwise as ew, type Operand } from '../kernels/elementwise.ts';
import { sumToRaw } from '../kernels/reduce.ts';
import { recorder, type Rules } from './tape.ts';

type X = { x: Tensor };
type Y = { y: Tensor };
type BinShapes = { aShape: Shape; bShape: Shape };

/** What each op of this file saves for its backward. */
export interface MathOps {
  neg: Record<string, never>;
  exp: Y;
  log: X;
  sqrt: Y;
  rsqrt: Y;
  abs: X;
  tanh: Y;
  sigmoid: Y;
  relu: X;
  gelu: X;
  quickgelu: X;
  add: BinShapes;
  sub: BinShapes;
  mul: { a: Operand; b: Operand };
  div: { a: Operand; b: Operand };
  pow: { a: Operand; b: Operand; y: Tensor };
  clamp: { x: Tensor; lo: number; hi: number };
  where: { cond: Tensor } & BinShapes;
  cast: { from: DType };
}
const recordOp = recorder<MathOps>();

export type UnaryOp = 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'tanh' | 'sigmoid' | 'relu' | 'gelu' | 'quickgelu';

/** Ops whose backward needs the output rather than the input. */
const SAVES_OUTPUT = new Set<UnaryOp>(['exp', 'sqrt', 'rsqrt', 'tanh', 'sigmoid']);

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const out = ew(op, [x]);
  recordOp(op, [x], out, SAVES_OUTPUT.has(op) ? { y: out } : { x });
  return out;
}

/** −x, elementwise. */
export const neg = (x: Tensor): Tensor => unary('neg', x);
/** eˣ, elementwise. */
export const exp = (x: Tensor): Tensor => unary('exp', x);
/** Natural logarithm, elementwise. */
export const log = (x: Tensor): Tensor => unary('log', x);
/** √x, elementwise. */
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
/** 1/√x, elementwise. */
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
/** |x|, elementwise (gradient 0 at 0, as PyTorch). */
export const abs = (x: Tensor): Tensor => unary('abs', x);
/** tanh x, elementwise. */
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
/** σ(x) = 1/(1 + e⁻ˣ), elementwise. */
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
/** max(x, 0), elementwise. */
export const relu = (x: Tensor): Tensor => unary('relu', x);
/** GELU with the exact erf form (PyTorch's default). */
export const gelu = (x: Tensor): Tensor => unary('gelu', x);
/** CLIP's QuickGELU: x · σ(1.702 x). */
export const quickgelu = (x: Tensor): Tensor => unary('quickgelu', x);

const asTensor = (v: Operand): Tensor | null => (v instanceof Tensor ? v : null);
const shapeOf = (v: Operand): Shape => (v instanceof Tensor ? v.shape : []);

type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow';

function binary(op: BinaryOp, a: Operand, b: Operand): Tensor {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) throw new TypeError(`${op}: at least one operand must be a tensor`);
  const out = ew(op, [a, b]);
  const inputs = [asTensor(a), asTensor(b)];
  if (op === 'add' || op === 'sub') recordOp(op, inputs, out, { aShape: shapeOf(a), bShape: shapeOf(b) });
  else if (op === 'pow') recordOp(op, inputs, out, { a, b, y: out });
  else recordOp(op, inputs, out, { a, b });
  return out;
}

/** a + b, elementwise with broadcasting (either may be a number). */
export const add = (a: Operand, b: Operand): Tensor => binary('add', a, b);
/** a − b, elementwise with broadcasting (either may be a number). */
export const sub = (a: Operand, b: Operand): Tensor => binary('sub', a, b);
/** a · b, elementwise with broadcasting (either may be a number). */
export const mul = (a: Operand, b: Operand): Tensor => binary('mul', a, b);
/** a / b, elementwise with broadcasting (either may be a number). */
export const div = (a: Operand, b: Operand): Tensor => binary('div', a, b);
/** a^b with PyTorch's conventions (negative bases allowed for integral exponents). */
export const pow = (a: Operand, b: Operand): Tensor => binary('pow', a, b);

/** Clamps into [lo, hi]; the gradient passes where lo ≤ x ≤ hi. */
export function clamp(x: Tensor, lo = -Infinity, hi = Infinity): Tensor {
  const low = Math.max(lo, -3.4028234663852886e38);
  const high = Math.min(hi, 3.4028234663852886e38);
  const out = ew('clamp', [x, low, high]);
  recordOp('clamp', [x], out, { x, lo: low, hi: high });
  return out;
}

/** cond ? a : b, elementwise with broadcasting; cond is any dtype (non-zero is true). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const out = ew('where', [cond, a, b]);
  recordOp('where', [null, asTensor(a), asTensor(b)], out, { cond, aShape: shapeOf(a), bShape: shapeOf(b) });
  return out;
}

/** x with `value` wherever mask is non-zero (PyTorch's masked_fill). */
export const maskedFill = (x: Tensor, mask: Tensor, value: number): Tensor => where(mask, value, x);

// Comparisons: i32 results (1 or 0), no gradient.
/** a == b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const eq = (a: Operand, b: Operand): Tensor => ew('eq', [a, b]);
/** a != b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const ne = (a: Operand, b: Operand): Tensor => ew('ne', [a, b]);
/** a < b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const lt = (a: Operand, b: Operand): Tensor => ew('lt', [a, b]);
/** a ≤ b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const le = (a: Operand, b: Operand): Tensor => ew('le', [a, b]);
/** a > b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const gt = (a: Operand, b: Operand): Tensor => ew('gt', [a, b]);
/** a ≥ b as i32 (1 or 0), elementwise with broadcasting; no gradient. */
export const ge = (a: Operand, b: Operand): Tensor => ew('ge', [a, b]);

/**
 * Converts to another dtype: f32 → f16 rounds to nearest even, → i32 truncates toward zero. Casts between f32
 * and f16 are differentiable (the gradient is cast back); casts to or from i32 are not.
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  // To its own dtype: a view that keeps the gradient's path (autocast casts whatever it is given).
  const out = x.dtype === dtype ? x.view(x.shape, x.strides) : ew(dtype === 'f32' ? 'toF32' : dtype === 'f16' ? 'toF16' : 'toI32', [x]);
  if (dtype !== 'i32' && x.dtype !== 'i32') recordOp('cast', [x], out, { from: x.dtype });
  return out;
}

/** The gradient of a broadcast operand, or null when it is a plain number or needs none. */
const reduceTo = (need: boolean, g: Tensor, shape: Shape | null): Tensor | null => (need && shape ? sumToRaw(g, shape) : null);

export const mathRules: Rules<MathOps> = {
  neg: (g) => [ew('neg', [g])],
  exp: (g, { y }) => [ew('mul', [g, y])],
  log: (g, { x }) => [ew('div', [g, x])],
  sqrt: (g, { y }) => [ew('div', [ew('mul', [g, 0.5]), y])],
  rsqrt: (g, { y }) => [ew('mul', [ew('mul', [g, -0.5]), ew('mul', [ew('mul', [y, y]), y])])],
  abs: (g, { x }) => [ew('absGrad', [x, g])],
  tanh: (g, { y }) => [ew('tanhGrad', [y, g])],
  sigmoid: (g, { y }) => [ew('sigmoidGrad', [y, g])],
  relu: (g, { x }) => [ew('reluGrad', [x, g])],
  gelu: (g, { x }) => [ew('geluGrad', [x, g])],
  quickgelu: (g, { x }) => [ew('quickgeluGrad', [x, g])],
  add: (g, { aShape, bShape }, [na, nb]) => [reduceTo(na, g, aShape), reduceTo(nb, g, bShape)],
  sub: (g, { aShape, bShape }, [na, nb]) => [reduceTo(na, g, aShape), reduceTo(nb, nb ? ew('neg', [g]) : g, bShape)],
  mul: (g, { a, b }, [na, nb]) => [reduceTo(na, na ? ew('mul', [g, b]) : g, shapeOf(a)), reduceTo(nb, nb ? ew('mul', [g, a]) : g, shapeOf(b))],
  div: (g, { a, b }, [na, nb]) => [
    reduceTo(na, na ? ew('div', [g, b]) : g, shapeOf(a)),
    reduceTo(nb, nb ? ew('neg', [ew('div', [ew('mul', [g, a]), ew('mul', [b, b])])]) : g, shapeOf(b)),
  ],
  pow: (g, { a, b, y }, [na, nb]) => [
    reduceTo(na, na ? ew('mul', [ew('mul', [g, b]), ew('pow', [a, typeof b === 'number' ? b - 1 : ew('sub', [b, 1])])]) : g, shapeOf(a)),
    reduceTo(nb, nb ? ew('mul', [ew('mul', [g, y]), typeof a === 'number' ? Math.log(a) : ew('log', [a])]) : g, shapeOf(b)),
  ],
  clamp: (g, { x, lo, hi }) => [ew('clampGrad', [x, g, lo, hi])],
  cast: (g, { from }) => [g.dtype === from ? g : ew(from === 'f16' ? 'toF16' : 'toF32', [g])],
  where: (g, { cond, aShape, bShape }, [, na, nb]) => [
    null,
    reduceTo(na, na ? ew('where', [cond, g, 0]) : g, aShape),
    reduceTo(nb, nb ? ew('where', [cond, 0, g]) : g, bShape),
  ],
};
