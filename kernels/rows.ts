// What the row kernels share (softmax.ts, layernorm.ts, crossentropy.ts: fused kernels over the last axis).
//
// One thread owns one row and makes a few passes over it (max, sum, write). On lavapipe a thread-per-row kernel
// beats a workgroup-per-row tree reduction because barriers and workgroup memory are slow there, and a row of a
// few KiB stays in the core's cache between passes. Wide rows (≥ 256 floats) on a device with fixed-width
// subgroups may instead take one subgroup per row: lanes read neighbouring vec4s and combine partial sums with
// subgroupAdd / subgroupMax, no workgroup memory, no barrier. kernels/policy.ts decides which walk runs.
//
// Rows are read as vec4 when their width and offsets allow (3× faster on lavapipe); one source serves both
// widths through the alias `V` (f32 or vec4<f32>) and the horizontal helpers hsum / hmax / onehot. f16 rows are
// read as V (`V(x[i])`), their statistics are f32, and each store rounds once (`y_t(value)`).
import { DTypeError, ShapeError } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import type { DType } from '../core/dtype.ts';
import type { BufferArgs, KernelSpec, StorageType, UniformArgs } from '../core/kernel.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';
import { SUBGROUP_DIRECTIVES, launchPerItem, perItemEntry, subgroupItemEntry, vectorPrelude, type Width } from './wgsl.ts';

export type { Width } from './wgsl.ts';

/** Threads per workgroup of every row kernel. */
export const WG = 64;

/** The storage type of a row buffer of `dtype` read `w` values at a time. */
export const storageOf = (w: Width, dtype: DType): StorageType => `${w === 4 ? 'vec4<' : ''}${dtype}${w === 4 ? '>' : ''}` as StorageType;

/** 4 when a row of D floats and every offset allow vec4 loads. */
export const widthFor = (D: number, ...offsets: number[]): Width => (D % 4 === 0 && offsets.every((o) => o % 4 === 0) ? 4 : 1);

/** The shared V/hsum/hmax prelude plus onehot(j, k): lane-wise 1.0 where element k of the row sits in V j. */
export function prelude(w: Width): string {
  const onehot = w === 4
    ? 'fn onehot(j: u32, k: u32) -> V { return select(V(0.0), V(1.0), vec4<u32>(4u * j, 4u * j + 1u, 4u * j + 2u, 4u * j + 3u) == vec4<u32>(k)); }'
    : 'fn onehot(j: u32, k: u32) -> V { return select(0.0, 1.0, j == k); }';
  return `${vectorPrelude(w)}\n${onehot}`;
}

/** Dispatches a row kernel over `items` threads (rows, or rows × lanes). */
export const launchRows = <S extends KernelSpec>(key: string, spec: () => S, buffers: BufferArgs<S>, uniforms: UniformArgs<S>, items: number) =>
  launchPerItem(key, spec, buffers, uniforms, items, WG);

/** Each row is u.W values of type V (u.W = D / width): the opening of a thread-per-row kernel. */
export const ROW_ID = `${perItemEntry(WG, 'row')}
  if (row >= u.rows) { return; }
  let base = row * u.W;`;

/** A contiguous view of x as [rows, D] over its last axis (f32, or f16 where `half`). */
export function rowsOf(op: string, x: Tensor, half = false): { src: Tensor; rows: number; D: number } {
  if (x.dtype !== 'f32' && !(half && x.dtype === 'f16')) throw new DTypeError(`${op}: expects ${half ? 'f32 or f16' : 'f32'} input, got ${x.dtype}`);
  if (x.rank === 0) throw new ShapeError(`${op}: expects at least one axis, got a scalar`);
  const D = x.shape[x.rank - 1];
  return { src: contiguousCopy(x), rows: D === 0 ? 0 : x.size / D, D };
}

/** How a kernel walks its rows: the WGSL opening (binding row, base, first, step) and the cross-lane reductions. */
export interface Walk {
  directives: string[];
  entry: string;
  sum: (v: string) => string;
  max: (v: string) => string;
}

/** One thread per row: it visits every V of the row itself. */
export const THREAD_WALK: Walk = { directives: [], entry: `${ROW_ID}\n  let first = 0u;\n  let step = 1u;`, sum: (v) => v, max: (v) => v };

/**
 * One subgroup of `lanes` per row: lane ℓ visits V ℓ, ℓ + lanes, … (one contiguous load per step across the
 * subgroup instead of a gather from as many rows) and partial results meet through subgroupAdd / subgroupMax.
 * The lane count is a compile-time constant: one pipeline per subgroup width.
 */
export function subgroupWalk(lanes: number): Walk {
  return {
    directives: SUBGROUP_DIRECTIVES,
    entry: `${subgroupItemEntry(WG, lanes, 'row')}
  if (row >= u.rows) { return; }
  let base = row * u.W;
  let first = lane;
  let step = ${lanes}u;`,
    sum: (v) => `subgroupAdd(${v})`,
    max: (v) => `subgroupMax(${v})`,
  };
}

/** The subgroup width this device could walk a wide row with (rows ≥ 256 floats read as vec4), or null. */
export function rowLanes(D: number, w: Width): number | null {
  const lanes = getEngine().gpu.subgroupSize;
  return w === 4 && D >= 256 && lanes !== null && WG % lanes === 0 ? lanes : null;
}

/** Most values of V each lane of a 'registers' row keeps (a 1024-wide row over 8 lanes: 32 vec4s). */
const MAX_REGISTER_CHUNKS = 64;

/**
 * How many values of V each lane holds when a subgroup keeps a row of D floats in registers, or null where that
 * cannot serve the row (no fixed subgroup width, a row that does not split evenly, or too many registers).
 */
export function registerChunks(D: number, w: Width): number | null {
  const lanes = rowLanes(D, w);
  if (lanes === null || (D / w) % lanes !== 0) return null;
  const chunks = D / w / lanes;
  return chunks <= MAX_REGISTER_CHUNKS ? chunks : null;
}
