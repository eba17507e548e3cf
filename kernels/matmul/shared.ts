// What every matmul variant shares: the problem (uniforms, batch offsets through broadcast strides), the
// epilogue (bias, activation, a residual added, one rounding to C's storage type) and the operand load modes. Each variant file
// (v1.ts … v4.ts) builds only its own WGSL from these; kernels/matmul.ts launches, kernels/policy.ts chooses.
//
// Storage: every read of A, B or bias is converted to f32 where it is read (`f32(a[i])`, `vec4<f32>(a[i])`) and
// every store of C converts the f32 result to C's storage type (`c_t(v)`): the identity for f32 buffers, the one
// widening / the one rounding for f16 ones (core/kernel.ts declares `alias c_t = …` per binding). So one source
// serves f32, f16 and mixed operands, and the products always accumulate in f32.
import { HELPERS } from '../elementwise.ts';

export type Activation = 'none' | 'relu' | 'gelu' | 'quickgelu';

/** The activation applied after the bias, as WGSL over an f32 value. */
export const ACTIVATION: Record<Activation, (v: string) => string> = {
  none: (v) => v,
  relu: (v) => `max(${v}, 0.0)`,
  gelu: (v) => `gelu_(${v})`,
  quickgelu: (v) => `(${v} * sigmoid_(1.702 * ${v}))`,
};

/** A variant and its register block: rows × columns of C per thread (v2, v4), columns per lane (v3). */
export interface MatmulConfig {
  version: 'v1' | 'v2' | 'v3' | 'v4';
  tm: number;
  tn: number;
}

/**
 * How an operand is loaded. A: 'k4' reads four consecutive k of a row as a vec4 (row-major A), 'm4' four
 * consecutive rows at one k (a transposed A view); B: 'n4' four consecutive columns (row-major B), 'k4' four
 * consecutive k of a column (a transposed B view: x·Wᵀ with PyTorch's [out, in] weights). 'scalar' reads one
 * value through the strides. Vector modes need the dimension, strides and offset to be multiples of 4.
 */
export type ALoad = 'k4' | 'm4' | 'scalar';
export type BLoad = 'n4' | 'k4' | 'scalar';

/** Everything a variant's source depends on besides its tile. */
export interface SourceOptions {
  aLoad: ALoad;
  bLoad: BLoad;
  bias: boolean;
  activation: Activation;
  /** A tensor laid out as C added after the activation (a residual stream: x + f(x·W + b) in one pass). */
  residual: boolean;
}

/** One matmul variant: its WGSL, what it needs from the device, and the block of C one workgroup covers. */
export interface MatmulVariant {
  /** Rows and columns of C per workgroup for a register block of tm × tn. */
  tile(tm: number, tn: number): [number, number];
  /** The load modes it can use given the ones the operands' layout allows (v1 and v4 read through strides). */
  loads(allowed: { aLoad: ALoad; bLoad: BLoad }): { aLoad: ALoad; bLoad: BLoad };
  source(tm: number, tn: number, options: SourceOptions): string;
  directives: string[];
}

/** The uniforms of every variant: sizes, batch broadcast, offsets and strides (elements) of A and B. */
export const UNIFORMS = {
  M: 'u32', N: 'u32', K: 'u32',
  batchRank: 'u32', batchShape: 'vec8u', aBatch: 'vec8u', bBatch: 'vec8u',
  offA: 'u32', sAm: 'u32', sAk: 'u32',
  offB: 'u32', sBk: 'u32', sBn: 'u32',
  offBias: 'u32', offRes: 'u32',
} as const;

/** WGSL: aOff and bOff, where batch `batch` of A and B starts (broadcast batch axes have stride 0). */
export const BATCH_OFFSETS = `
  var aOff = u.offA;
  var bOff = u.offB;
  var rem = batch;
  for (var d = i32(u.batchRank) - 1; d >= 0; d--) {
    let extent = at8(u.batchShape, u32(d));
    let coord = rem % extent;
    rem = rem / extent;
    aOff += coord * at8(u.aBatch, u32(d));
    bOff += coord * at8(u.bBatch, u32(d));
  }`;

/** The helper functions (gelu_, sigmoid_) the activations call. */
export const PRELUDE = HELPERS;

/**
 * The epilogue for one value of C, at column `col` and element `index` of C: + bias, activation, + the residual's
 * element at the same place, rounded to C's storage type.
 */
export function epilogue(acc: string, col: string, index: string, { bias, activation, residual }: SourceOptions): string {
  const v = bias ? `(${acc} + f32(bias[u.offBias + ${col}]))` : acc;
  const activated = ACTIVATION[activation](v);
  return `c_t(${residual ? `${activated} + f32(residual[u.offRes + ${index}])` : activated})`;
}

/**
 * WGSL that stores a thread's TM × TN block c{i}_{j} at rows row0 + i and columns col0 + j of C, skipping
 * what lies outside it (the epilogue v2 and v4 share).
 */
export function storeBlock(tm: number, tn: number, options: SourceOptions): string[] {
  const store: string[] = [];
  for (let i = 0; i < tm; i++) {
    store.push(`if (row0 + ${i}u < u.M) {`);
    store.push(`  let base${i} = (batch * u.M + row0 + ${i}u) * u.N + col0;`);
    for (let j = 0; j < tn; j++) {
      store.push(`  if (col0 + ${j}u < u.N) { c[base${i} + ${j}u] = ${epilogue(`c${i}_${j}`, `col0 + ${j}u`, `base${i} + ${j}u`, options)}; }`);
    }
    store.push('}');
  }
  return store;
}

/** [0, 1, …, n − 1]: the unrolled indices of a register block. */
export const range = (n: number) => [...Array(n).keys()];
