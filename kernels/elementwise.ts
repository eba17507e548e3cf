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
import { getEngine, MAX_RANK, type UniformType } from '../core/engine.ts';
import { broadcastShapes, sameShape } from '../core/shape.ts';
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
  if (def.float && inType !== 'f32') throw new DTypeError(`${op}: expects f32 input, got ${inType}`);
  return { inType, outType: def.out ?? inType };
}

/** The output's element type in WGSL and how a scalar of the input type reads from the uniform. */
const wgslType = (d: DType): string => (d === 'f32' ? 'f32' : 'i32');

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
    if (!sameShape(into.shape, shape)) throw new ShapeError(`${op}: result of shape ${fmtShape(shape)} cannot be written into a view of shape ${fmtShape(into.shape)}`);
    if (into.dtype !== outType) throw new DTypeError(`${op}: result is ${outType} but the destination is ${into.dtype}`);
  }
  const n = out.size;
  if (n === 0) return out;

  const flat = out.isContiguous && tensors.every((t) => t.isContiguous && sameShape(t.shape, shape));
  // Operand kinds: t = tensor, s = scalar uniform; dtype per operand.
  const kinds = operands.map((v, i) => {
    const dt = def.cond && i === 0 ? operandDType(v, 'i32') : operandDType(v, inType);
    return `${v instanceof Tensor ? 't' : 's'}${dt[0]}`;
  });
  const key = `ew:${op}:${kinds.join('')}:${outType}:${flat ? 'flat' : 'strided'}`;
  const engine = getEngine();
  const kernel = engine.kernel(key, () => {
    const inputs: Record<string, 'f32' | 'i32'> = {};
    const uniforms: Record<string, UniformType> = { n: 'u32', outOff: 'u32' };
    if (!flat) Object.assign(uniforms, { rank: 'u32', shape: 'vec8u', outStrides: 'vec8u' });
    const loads: string[] = [];
    const names = ['a', 'b', 'c', 'd'];
    kinds.forEach((k, i) => {
      const ty = k[1] === 'f' ? 'f32' : 'i32';
      if (k[0] === 't') {
        inputs[`in${i}`] = ty;
        uniforms[`off${i}`] = 'u32';
        if (!flat) uniforms[`st${i}`] = 'vec8u';
        loads.push(`let ${names[i]} = in${i}[${flat ? `i + u.off${i}` : `o${i}`}];`);
      } else {
        uniforms[`k${i}`] = ty;
        loads.push(`let ${names[i]} = u.k${i};`);
      }
    });
    const tensorIdx = kinds.map((k, i) => (k[0] === 't' ? i : -1)).filter((i) => i >= 0);
    const decode = flat
      ? 'let oo = i + u.outOff;'
      : [
          'var rem = i;',
          'var oo = u.outOff;',
          ...tensorIdx.map((i) => `var o${i} = u.off${i};`),
          'for (var d = i32(u.rank) - 1; d >= 0; d--) {',
          '  let dd = u32(d);',
          '  let extent = at8(u.shape, dd);',
          '  let coord = rem % extent;',
          '  rem = rem / extent;',
          '  oo += coord * at8(u.outStrides, dd);',
          ...tensorIdx.map((i) => `  o${i} += coord * at8(u.st${i}, dd);`),
          '}',
        ].join('\n    ');
    return {
      name: `${op}(${kinds.join(',')})`,
      outputs: { out: wgslType(outType) as 'f32' | 'i32' },
      inputs,
      uniforms,
      wgsl: `${HELPERS}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let step = nwg.x * ${WG}u;
  for (var i = gid.x; i < u.n; i += step) {
    ${decode}
    ${loads.join('\n    ')}
    out[oo] = ${def.expr};
  }
}`,
    };
  });

  const uniforms: Record<string, number | readonly number[]> = { n, outOff: out.offset };
  if (!flat) Object.assign(uniforms, { rank: shape.length, shape, outStrides: out.strides });
  const buffers: Record<string, GPUBuffer> = { out: out.bufferFor(op) };
  operands.forEach((v, i) => {
    if (v instanceof Tensor) {
      buffers[`in${i}`] = v.bufferFor(op);
      uniforms[`off${i}`] = v.offset;
      if (!flat) uniforms[`st${i}`] = broadcastStrides(v, shape);
    } else {
      const isInt = kinds[i][1] === 'i';
      if (isInt && !Number.isInteger(v)) throw new DTypeError(`${op}: scalar ${v} is not an integer but the op runs on i32`);
      uniforms[`k${i}`] = v;
    }
  });
  engine.dispatch(kernel, buffers, uniforms, [Math.min(Math.ceil(n / WG), 65535)]);
  return out;
}

/** Strides of `t` read as a tensor of (broadcast) shape `shape`: 0 along broadcast axes. */
export function broadcastStrides(t: Tensor, shape: readonly number[]): number[] {
  const lead = shape.length - t.rank;
  return shape.map((_, i) => (i < lead || t.shape[i - lead] === 1 ? 0 : t.strides[i - lead]));
}
