// Differentiable elementwise math: thin wrappers that run the elementwise template and record the op.
// Comparisons and casts are not differentiable and record nothing.
import type { DType } from '../core/dtype.ts';
import { Tensor } from '../core/tensor.ts';
import { recordOp } from './autodiff.ts';
import { elementwise, type Operand } from './elementwise.ts';

export type UnaryOp = 'neg' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'abs' | 'tanh' | 'sigmoid' | 'relu' | 'gelu' | 'quickgelu';

/** Ops whose backward needs the output rather than the input. */
const SAVES_OUTPUT = new Set<UnaryOp>(['exp', 'sqrt', 'rsqrt', 'tanh', 'sigmoid']);

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const out = elementwise(op, [x]);
  recordOp(op, [x], out, SAVES_OUTPUT.has(op) ? { y: out } : { x });
  return out;
}

export const neg = (x: Tensor): Tensor => unary('neg', x);
export const exp = (x: Tensor): Tensor => unary('exp', x);
export const log = (x: Tensor): Tensor => unary('log', x);
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x);
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x);
export const abs = (x: Tensor): Tensor => unary('abs', x);
export const tanh = (x: Tensor): Tensor => unary('tanh', x);
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x);
export const relu = (x: Tensor): Tensor => unary('relu', x);
/** GELU with the exact erf form (PyTorch's default). */
export const gelu = (x: Tensor): Tensor => unary('gelu', x);
/** CLIP's QuickGELU: x · σ(1.702 x). */
export const quickgelu = (x: Tensor): Tensor => unary('quickgelu', x);

const asTensor = (v: Operand): Tensor | null => (v instanceof Tensor ? v : null);

type BinaryOp = 'add' | 'sub' | 'mul' | 'div' | 'pow';

function binary(op: BinaryOp, a: Operand, b: Operand): Tensor {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) throw new TypeError(`${op}: at least one operand must be a tensor`);
  const out = elementwise(op, [a, b]);
  const shapeOf = (v: Operand) => (v instanceof Tensor ? v.shape : []);
  const inputs = [asTensor(a), asTensor(b)];
  if (op === 'add' || op === 'sub') recordOp(op, inputs, out, { aShape: shapeOf(a), bShape: shapeOf(b) });
  else if (op === 'pow') recordOp(op, inputs, out, { a, b, y: out });
  else recordOp(op, inputs, out, { a, b });
  return out;
}

export const add = (a: Operand, b: Operand): Tensor => binary('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => binary('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => binary('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => binary('div', a, b);
/** a^b with PyTorch's conventions (negative bases allowed for integral exponents). */
export const pow = (a: Operand, b: Operand): Tensor => binary('pow', a, b);

/** Clamps into [lo, hi]; the gradient passes where lo ≤ x ≤ hi. */
export function clamp(x: Tensor, lo = -Infinity, hi = Infinity): Tensor {
  const low = Math.max(lo, -3.4028234663852886e38);
  const high = Math.min(hi, 3.4028234663852886e38);
  const out = elementwise('clamp', [x, low, high]);
  recordOp('clamp', [x], out, { x, lo: low, hi: high });
  return out;
}

/** cond ? a : b, elementwise with broadcasting; cond is any dtype (non-zero is true). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const out = elementwise('where', [cond, a, b]);
  const shapeOf = (v: Operand) => (v instanceof Tensor ? v.shape : []);
  recordOp('where', [null, asTensor(a), asTensor(b)], out, { cond, aShape: shapeOf(a), bShape: shapeOf(b) });
  return out;
}

/** x with `value` wherever mask is non-zero (PyTorch's masked_fill). */
export const maskedFill = (x: Tensor, mask: Tensor, value: number): Tensor => where(mask, value, x);

// Comparisons: i32 results (1 or 0), no gradient.
export const eq = (a: Operand, b: Operand): Tensor => elementwise('eq', [a, b]);
export const ne = (a: Operand, b: Operand): Tensor => elementwise('ne', [a, b]);
export const lt = (a: Operand, b: Operand): Tensor => elementwise('lt', [a, b]);
export const le = (a: Operand, b: Operand): Tensor => elementwise('le', [a, b]);
export const gt = (a: Operand, b: Operand): Tensor => elementwise('gt', [a, b]);
export const ge = (a: Operand, b: Operand): Tensor => elementwise('ge', [a, b]);

/** Converts to another dtype (f32 → i32 truncates toward zero). Not differentiable. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x.view(x.shape, x.strides);
  return elementwise(dtype === 'f32' ? 'toF32' : 'toI32', [x]);
}
