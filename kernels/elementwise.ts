// Elementwise kernels, generated from one template.
//
// Every unary, binary and ternary op is an expression over its operands; the template supplies indexing.
// Operands are tensors (read through their strides, so broadcasting, transposes and slices cost nothing) or
// plain numbers (passed as uniforms, so `mul(x, 0.5)` uploads nothing). Two index paths are generated:
// `flat` when every tensor is contiguous with the output's shape, `strided` otherwise (coordinates are
// decoded from the linear index, then dotted with each operand's strides; the output may be a strided view
// too, which is how concat/pad/slice-assignment write into part of a tensor).
import type { DType } from '../core/dtype.ts';
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { MAX_RANK, type StorageType, type UniformType } from '../core/kernel.ts';
import { grid, perItemEntry } from './wgsl.ts';
import { broadcastShapes, broadcastStridesTo, sameShape } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';

export type Operand = Tensor | number;

const WG = 256;

/** WGSL helpers available to every elementwise expression. */
export const HELPERS = /* wgsl */ `
// erf, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below f32 resolution near 1).
fn erf_(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-x * x);
  return select(-y, y, x >= 0.0);
}
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// tanh through exp of a clamped argument: exact to f32 and never inf/inf.
fn tanh_(x: f32) -> f32 { let e = exp(-2.0 * clamp(abs(x), 0.0, 15.0)); return sign(x) * (1.0 - e) / (1.0 + e); }
fn gelu_(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.70710678118654752)); }
fn gelu_grad_(x: f32) -> f32 { return 0.5 * (1.0 + erf_(x * 0.70710678118654752)) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
// pow with PyTorch's conventions: x^0 = 1, negative bases allowed for integral exponents.
fn pow_(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  let m = pow(abs(a), b);
  if (a >= 0.0) { return m; }
  if (fract(b) != 0.0) { return bitcast<f32>(0x7fc00000u | (bitcast<u32>(a) & 0u)); } // NaN, built at run time
  return select(m, -m, fract(b * 0.5) != 0.0);
}
`;

/**
 * The op table: WGSL expression of operands a, b, c. `float`: only defined on f32 inputs.
 * `out`: result dtype when it is not the inputs' dtype. `cond`: the first operand is a condition of any dtype.
 */
interface EwDef {
  arity: 1 | 2 | 3 | 4;
  expr: string;
  float?: boolean;
  out?: DType;
  cond?: boolean;
}

export const EW = {
  // unary
  identity: { arity: 1, expr: 'a' },
  neg: { arity: 1, expr: '-a' },
  abs: { arity: 1, expr: 'abs(a)' },
  exp: { arity: 1, expr: 'exp(a)', float: true },
  log: { arity: 1, expr: 'log(a)', float: true },
  sqrt: { arity: 1, expr: 'sqrt(a)', float: true },
  rsqrt: { arity: 1, expr: 'inverseSqrt(a)', float: true },
  tanh: { arity: 1, expr: 'tanh_(a)', float: true },
  sigmoid: { arity: 1, expr: 'sigmoid_(a)', float: true },
  relu: { arity: 1, expr: 'max(a, 0.0)', float: true },
  gelu: { arity: 1, expr: 'gelu_(a)', float: true },
  quickgelu: { arity: 1, expr: 'a * sigmoid_(1.702 * a)', float: true },
  toF32: { arity: 1, expr: 'f32(a)', out: 'f32' },
  toI32: { arity: 1, expr: 'i32(a)', out: 'i32' },
  toF16: { arity: 1, expr: 'f32(a)', out: 'f16' }, // to f32 (i32 too), rounded once by the f16 store
  // binary
  add: { arity: 2, expr: 'a + b' },
  sub: { arity: 2, expr: 'a - b' },
  mul: { arity: 2, expr: 'a * b' },
  div: { arity: 2, expr: 'a / b' },
  pow: { arity: 2, expr: 'pow_(a, b)', float: true },
  eq: { arity: 2, expr: 'select(0, 1, a == b)', out: 'i32' },
  ne: { arity: 2, expr: 'select(0, 1, a != b)', out: 'i32' },
  lt: { arity: 2, expr: 'select(0, 1, a < b)', out: 'i32' },
  le: { arity: 2, expr: 'select(0, 1, a <= b)', out: 'i32' },
  gt: { arity: 2, expr: 'select(0, 1, a > b)', out: 'i32' },
  ge: { arity: 2, expr: 'select(0, 1, a >= b)', out: 'i32' },
  // fused backward helpers: b is the upstream gradient
  tanhGrad: { arity: 2, expr: 'b * (1.0 - a * a)', float: true }, // a = tanh(x)
  sigmoidGrad: { arity: 2, expr: 'b * a * (1.0 - a)', float: true }, // a = sigmoid(x)
  reluGrad: { arity: 2, expr: 'select(0.0, b, a > 0.0)', float: true },
  geluGrad: { arity: 2, expr: 'b * gelu_grad_(a)', float: true },
  quickgeluGrad: { arity: 2, expr: 'b * (sigmoid_(1.702 * a) * (1.0 + 1.702 * a * (1.0 - sigmoid_(1.702 * a))))', float: true },
  absGrad: { arity: 2, expr: 'b * sign(a)', float: true },
  // ternary
  where: { arity: 3, expr: 'select(c, b, a != 0)', cond: true }, // a: condition (a of its own dtype, compared with 0)
  clamp: { arity: 3, expr: 'clamp(a, b, c)' },
  // quaternary
  clampGrad: { arity: 4, expr: 'select(0.0, b, a >= c && a <= d)', float: true }, // a = x, b = upstream gradient, c..d = bounds
} satisfies Record<string, EwDef>;

export type EwOp = keyof typeof EW;

function operandDType(v: Operand, fallback: DType): DType {
  return v instanceof Tensor ? v.dtype : fallback;
}

/** Result dtype of an elementwise op, validating operand dtypes. */
function resolveDTypes(op: EwOp, operands: readonly Operand[]): { inType: DType; outType: DType } {
  const def: EwDef = EW[op];
  const valueOperands = def.cond ? operands.slice(1) : operands;
  const tensorTypes = valueOperands.filter((v): v is Tensor => v instanceof Tensor).map((t) => t.dtype);
  const inType: DType = tensorTypes[0] ?? 'f32';
  if (tensorTypes.some((t) => t !== inType)) {
    throw new DTypeError(`${op}: operands have dtypes ${tensorTypes.join(' and ')}; cast one so they match`);
  }
  if (def.float && inType === 'i32') throw new DTypeError(`${op}: expects f32 or f16 input, got ${inType}`);
  return { inType, outType: def.out ?? inType };
}

/** The output's element type in WGSL. */
const wgslType = (d: DType): string => d;
/** One letter per dtype in kernel keys: f32, i32, and h for f16 (half). */
const DTYPE_CODE: Record<DType, string> = { f32: 'f', i32: 'i', f16: 'h' };
const CODE_TYPE: Record<string, DType> = { f: 'f32', i: 'i32', h: 'f16' };

/**
 * Runs an elementwise op. `into`, when given, is the (possibly strided) view the result is written to; it must
 * have the broadcast shape. Returns the output tensor (a new contiguous tensor when `into` is absent).
 */
export function elementwise(op: EwOp, operands: readonly Operand[], into?: Tensor): Tensor {
  const def: EwDef = EW[op];
  if (operands.length !== def.arity) throw new TypeError(`${op}: expects ${def.arity} operands, got ${operands.length}`);
  const tensors = operands.filter((v): v is Tensor => v instanceof Tensor);
  for (const t of tensors) t.bufferFor(op);
  const { inType, outType } = resolveDTypes(op, operands);
  const shape = broadcastShapes(op, ...tensors.map((t) => t.shape), ...(into ? [into.shape] : []));
  if (shape.length > MAX_RANK) throw new ShapeError(`${op}: rank ${shape.length} exceeds the supported ${MAX_RANK}`);
  const out = into ?? Tensor.empty(shape, outType);
  if (into) {
    if (!sameShape(into.shape, shape)) {
      throw new ShapeError(`${op}: result of shape ${fmtShape(shape)} cannot be written into a view of shape ${fmtShape(into.shape)}`);
    }
    if (into.dtype !== outType) throw new DTypeError(`${op}: result is ${outType} but the destination is ${into.dtype}`);
  }
  const n = out.size;
  if (n === 0) return out;

  const flat = out.isContiguous && tensors.every((t) => t.isContiguous && sameShape(t.shape, shape));
  // Operand kinds: t = tensor, s = scalar uniform; dtype per operand.
  const kinds = operands.map((v, i) => {
    const dt = def.cond && i === 0 ? operandDType(v, 'i32') : operandDType(v, inType);
    return `${v instanceof Tensor ? 't' : 's'}${DTYPE_CODE[dt]}`;
  });
  if (!flat) {
    launch(op, 'strided', kinds, outType, operands, out, shape, n, 0);
    return out;
  }
  // vec4 loads are ~3× faster on lavapipe; they need every offset 16-byte aligned. A ragged tail of up to
  // three elements goes through the scalar kernel.
  const aligned = out.offset % 4 === 0 && tensors.every((t) => t.offset % 4 === 0);
  const bulk = aligned ? n - (n % 4) : 0;
  if (bulk > 0) launch(op, 'vec4', kinds, outType, operands, out, shape, bulk / 4, 0);
  if (bulk < n) launch(op, 'flat', kinds, outType, operands, out, shape, n - bulk, bulk);
  return out;
}

/** x itself when contiguous (as a new view), otherwise a contiguous copy; records nothing for autodiff. */
export function contiguousCopy(x: Tensor): Tensor {
  return x.isContiguous ? x.view(x.shape, x.strides) : elementwise('identity', [x]);
}

type Mode = 'flat' | 'vec4' | 'strided';
const NAMES = ['a', 'b', 'c', 'd'];

/**
 * Merges adjacent axes that are laid out contiguously in every operand and drops size-1 axes, so a strided
 * kernel decodes as few coordinates as possible (a transposed [B, L, H, d] copy becomes rank 3, a broadcast
 * bias add rank 2).
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  shape.forEach((extent, i) => {
    if (extent === 1) return;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((st, k) => outStrides[k][last] === extent * st[i])) {
      outShape[last] *= extent;
      strides.forEach((st, k) => (outStrides[k][last] = st[i]));
    } else {
      outShape.push(extent);
      strides.forEach((st, k) => outStrides[k].push(st[i]));
    }
  });
  return outShape.length ? { shape: outShape, strides: outStrides } : { shape: [1], strides: strides.map(() => [0]) };
}

/** The kernel source for one op, operand-kind combination and indexing mode (`rank`: strided mode's rank). */
function kernelSpec(op: EwOp, mode: Mode, kinds: string[], outType: DType, rank: number) {
  const def: EwDef = EW[op];
  const inputs: Record<string, StorageType> = {};
  const uniforms: Record<string, UniformType> = { n: 'u32', outOff: 'u32' };
  if (mode === 'strided') Object.assign(uniforms, { shape: 'vec8u', outStrides: 'vec8u' });
  const loads: string[] = [];
  // f16 values are computed on in f32 (every helper is written for f32) and rounded once when stored.
  kinds.forEach((k, i) => {
    const ty = CODE_TYPE[k[1]];
    if (k[0] === 't') {
      inputs[`in${i}`] = (mode === 'vec4' ? `vec4<${ty}>` : ty) as StorageType;
      uniforms[`off${i}`] = 'u32';
      if (mode === 'strided') uniforms[`st${i}`] = 'vec8u';
      const load = `in${i}[${mode === 'strided' ? `o${i}` : `i + u.off${i}`}]`;
      loads.push(`let ${NAMES[i]} = ${ty === 'f16' ? `${mode === 'vec4' ? 'vec4<f32>' : 'f32'}(${load})` : load};`);
    } else {
      uniforms[`k${i}`] = ty === 'f16' ? 'f32' : ty; // an f16 operand's scalar travels (and is used) as f32
      loads.push(`let ${NAMES[i]} = u.k${i};`);
    }
  });
  const outTy = wgslType(outType);
  const computeTy = outType === 'f16' ? 'f32' : outTy;
  const rounded = (v: string) => (outType === 'f16' ? `${mode === 'vec4' ? 'vec4<f16>' : 'f16'}(${v})` : v);
  let store = `out[oo] = ${rounded(def.expr)};`;
  if (mode === 'vec4') {
    // Apply the scalar expression per component: a → a0…a3 (scalars are shared by all four).
    const component = (c: number) => def.expr.replace(/\b([abcd])\b/g, `$1${c}`);
    const split = kinds.flatMap((k, i) => [0, 1, 2, 3].map((c) => `let ${NAMES[i]}${c} = ${NAMES[i]}${k[0] === 't' ? `[${c}]` : ''};`));
    store = `${split.join(' ')}\n  out[oo] = ${rounded(`vec4<${computeTy}>(${[0, 1, 2, 3].map(component).join(', ')})`)};`;
  }
  const tensorIdx = kinds.map((k, i) => (k[0] === 't' ? i : -1)).filter((i) => i >= 0);
  const decode =
    mode !== 'strided'
      ? 'let oo = i + u.outOff;'
      : // Unrolled for this rank: innermost axis first; the outermost coordinate is what remains.
        [
          'var rem = i;',
          'var oo = u.outOff;',
          ...tensorIdx.map((i) => `var o${i} = u.off${i};`),
          ...[...Array(rank).keys()].reverse().flatMap((d) => [
            d > 0 ? `let c${d} = rem % at8(u.shape, ${d}u); rem = rem / at8(u.shape, ${d}u);` : `let c${d} = rem;`,
            `oo += c${d} * at8(u.outStrides, ${d}u);`,
            ...tensorIdx.map((i) => `o${i} += c${d} * at8(u.st${i}, ${d}u);`),
          ]),
        ].join('\n  ');
  return {
    name: `${op}(${kinds.join(',')})${mode === 'flat' ? '' : `_${mode}`}${mode === 'strided' ? rank : ''}`,
    outputs: { out: (mode === 'vec4' ? `vec4<${outTy}>` : outTy) as StorageType },
    inputs,
    uniforms,
    directives: outType === 'f16' || kinds.some((k) => k[1] === 'h') ? ['enable f16;'] : [],
    wgsl: `${HELPERS}
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  ${decode}
  ${loads.join('\n  ')}
  ${store}
}`,
  };
}

/** Dispatches `count` items (elements, or vec4s in vec4 mode) starting `skip` elements into every flat operand. */
function launch(
  op: EwOp,
  mode: Mode,
  kinds: string[],
  outType: DType,
  operands: readonly Operand[],
  out: Tensor,
  shape: readonly number[],
  count: number,
  skip: number,
): void {
  const engine = getEngine();
  const tensorOperands = operands.filter((v): v is Tensor => v instanceof Tensor);
  const layout = mode === 'strided' ? coalesce(shape, [out.strides, ...tensorOperands.map((t) => broadcastStridesTo(t.shape, t.strides, shape))]) : null;
  const rank = layout?.shape.length ?? 0;
  const kernel = engine.kernel(`ew:${op}:${kinds.join('')}:${outType}:${mode}${rank || ''}`, () => kernelSpec(op, mode, kinds, outType, rank));
  const scale = mode === 'vec4' ? 4 : 1;
  const uniforms: Record<string, number | readonly number[]> = { n: count, outOff: (out.offset + skip) / scale };
  if (layout) Object.assign(uniforms, { shape: layout.shape, outStrides: layout.strides[0] });
  const buffers: { out: GPUBuffer } & Record<string, GPUBuffer> = { out: out.bufferFor(op) };
  let t = 0;
  operands.forEach((v, i) => {
    if (v instanceof Tensor) {
      buffers[`in${i}`] = v.bufferFor(op);
      uniforms[`off${i}`] = (v.offset + skip) / scale;
      if (layout) uniforms[`st${i}`] = layout.strides[1 + t];
      t++;
    } else {
      if (kinds[i][1] === 'i' && !Number.isInteger(v)) throw new DTypeError(`${op}: scalar ${v} is not an integer but the op runs on i32`);
      uniforms[`k${i}`] = v;
    }
  });
  engine.dispatch(kernel, buffers, uniforms, grid(Math.ceil(count / WG)));
}

