// WGSL shared by the kernel families: the opening of a one-thread-per-item kernel and the grid that covers
// any number of items, the f32/vec4 row prelude, the f32 range, and the launcher of per-item kernels.
import { getEngine } from '../core/engine.ts';
import type { BufferArgs, KernelSpec, UniformArgs } from '../core/kernel.ts';

/** The largest finite f32, as WGSL source (the identity of max/min reductions is its negation / itself). */
export const F32_MAX = '3.4028234663852886e38';

/** Elements per load: 4 when rows and offsets allow vec4 loads (3× faster on lavapipe), else 1. */
export type Width = 1 | 4;
export const vecType = (w: Width) => (w === 4 ? ('vec4<f32>' as const) : ('f32' as const));
/** The f16 storage type of a value `w` wide (kernels that hold a buffer in f16 read it as vecType(w)). */
export const halfVecType = (w: Width) => (w === 4 ? ('vec4<f16>' as const) : ('f16' as const));

/**
 * `V` (f32 or vec4<f32>) and its horizontal sum and max, so one kernel source serves both widths: a row of D
 * floats is D / w values of type V.
 */
export function vectorPrelude(w: Width): string {
  return w === 4
    ? `alias V = vec4<f32>;
fn hsum(v: V) -> f32 { return v.x + v.y + v.z + v.w; }
fn hmax(v: V) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }`
    : `alias V = f32;
fn hsum(v: V) -> f32 { return v; }
fn hmax(v: V) -> f32 { return v; }`;
}

/**
 * The WGSL opening of a kernel with one thread per item over a 1-D range that may span two grid dimensions
 * (see grid()): declares `main` and binds the item's position to `index`. The caller writes the bounds check.
 */
export function perItemEntry(workgroupSize: number, index = 't'): string {
  return `@compute @workgroup_size(${workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ${index} = gid.x + gid.y * nwg.x * ${workgroupSize}u;`;
}

/** The directives of a kernel that calls subgroup builtins (its control flow is uniform per subgroup by design). */
export const SUBGROUP_DIRECTIVES = ['enable subgroups;', 'diagnostic(off, subgroup_uniformity);'];

/**
 * The WGSL opening of a kernel where a subgroup of `lanes` invocations shares each item (a row): declares `main`,
 * binds the item's position to `index` and the invocation's place in its subgroup to `lane`. Items span two grid
 * dimensions as in perItemEntry; the caller writes the bounds check (a whole subgroup leaves together).
 */
export function subgroupItemEntry(workgroupSize: number, lanes: number, index: string): string {
  return `@compute @workgroup_size(${workgroupSize})
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) localIndex: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let ${index} = (wid.x + wid.y * nwg.x) * ${workgroupSize / lanes}u + localIndex / ${lanes}u;`;
}

/** Splits `count` workgroups over x and y so neither exceeds the per-dimension limit (kernels rebuild the index). */
export function grid(count: number, limit = 65535): [number, number] {
  if (count <= limit) return [count, 1];
  const y = Math.ceil(count / limit);
  return [Math.ceil(count / y), y];
}

/**
 * Compiles (once per key) and dispatches a kernel of `workgroupSize` threads per workgroup with one thread
 * per item.
 */
export function launchPerItem<S extends KernelSpec>(
  key: string,
  spec: () => S,
  buffers: BufferArgs<S>,
  uniforms: UniformArgs<S>,
  items: number,
  workgroupSize: number,
): void {
  const engine = getEngine();
  engine.dispatch(engine.kernel(key, spec), buffers, uniforms, grid(Math.ceil(items / workgroupSize)));
}
