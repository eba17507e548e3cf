// Fused row kernels over the last axis: softmax, log-softmax, layer norm, cross-entropy, forward and backward.
//
// One thread owns one row and makes a few passes over it (max, sum, write). On lavapipe a thread-per-row
// kernel beats a workgroup-per-row tree reduction because barriers and workgroup memory are slow there, and
// a row of a few KiB stays in the core's cache between passes. Rows are read as vec4 when their width and
// offsets allow (3× faster on lavapipe); the same source serves both widths through the alias `V` and the
// horizontal helpers hsum / hmax / onehot.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import type { DType } from '../core/dtype.ts';
import type { KernelSpec, StorageType } from '../core/kernel.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';
import { F32_MAX, halfKernel, halfVecType, launchPerItem, perItemEntry, vectorPrelude, vecType, type Width } from './wgsl.ts';

const WG = 64;

/** The storage type of a row buffer of `dtype` read `w` values at a time. */
const storageOf = (w: Width, dtype: DType): StorageType => (dtype === 'f16' ? halfVecType(w) : vecType(w));

/** 4 when a row of D floats and every offset allow vec4 loads. */
const widthFor = (D: number, ...offsets: number[]): Width => (D % 4 === 0 && offsets.every((o) => o % 4 === 0) ? 4 : 1);

/** The shared V/hsum/hmax prelude plus onehot(j, k): lane-wise 1.0 where element k of the row sits in V j. */
function prelude(w: Width): string {
  const onehot = w === 4
    ? 'fn onehot(j: u32, k: u32) -> V { return select(V(0.0), V(1.0), vec4<u32>(4u * j, 4u * j + 1u, 4u * j + 2u, 4u * j + 3u) == vec4<u32>(k)); }'
    : 'fn onehot(j: u32, k: u32) -> V { return select(0.0, 1.0, j == k); }';
  return `${vectorPrelude(w)}\n${onehot}`;
}

/** Dispatches a row kernel: one thread per row. */
const launchRows = (key: string, spec: () => KernelSpec, buffers: Record<string, GPUBuffer>, uniforms: Record<string, number>, rows: number) =>
  launchPerItem(key, spec, buffers, uniforms, rows, WG);

// Each row is u.W values of type V (u.W = D / width).
const ROW_ID = `${perItemEntry(WG, 'row')}
  if (row >= u.rows) { return; }
  let base = row * u.W;`;

/** A contiguous f32 view of x as [rows, D] over its last axis. */
function rowsOf(op: string, x: Tensor, half = false): { src: Tensor; rows: number; D: number } {
  if (x.dtype !== 'f32' && !(half && x.dtype === 'f16')) throw new DTypeError(`${op}: expects ${half ? 'f32 or f16' : 'f32'} input, got ${x.dtype}`);
  if (x.rank === 0) throw new ShapeError(`${op}: expects at least one axis, got a scalar`);
  const D = x.shape[x.rank - 1];
  return { src: contiguousCopy(x), rows: D === 0 ? 0 : x.size / D, D };
}

// ---- softmax / log-softmax ----------------------------------------------------------------------------------

/**
 * Wide rows (≥ 256 floats) on a device with fixed-width subgroups get one subgroup per row instead of one
 * thread: the lanes read neighbouring vec4s (one contiguous load per step instead of a gather from as many
 * rows) and combine their partial max and sum with subgroupMax / subgroupAdd — no workgroup memory, no
 * barrier. 1.02–1.17× the thread-per-row kernel on lavapipe (8 lanes) at [4096, 1024] (2.89–2.94 vs
 * 2.52–2.84 GB/s). The lane count is a compile-time constant: one pipeline per subgroup width.
 */
function subgroupRow(lanes: number) {
  return {
    directives: ['enable subgroups;', 'diagnostic(off, subgroup_uniformity);'],
    entry: `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let row = (wid.x + wid.y * nwg.x) * ${WG / lanes}u + li / ${lanes}u;
  if (row >= u.rows) { return; }
  let base = row * u.W;
  let first = lane;
  let step = ${lanes}u;`,
    sum: (v: string) => `subgroupAdd(${v})`,
    max: (v: string) => `subgroupMax(${v})`,
  };
}
const THREAD_ROW = { directives: [] as string[], entry: `${ROW_ID}\n  let first = 0u;\n  let step = 1u;`, sum: (v: string) => v, max: (v: string) => v };

/**
 * How a row kernel walks a wide row: one thread, or one subgroup; softmax also has 'registers', a subgroup whose
 * lanes hold the whole row in registers (see softmaxRaw).
 */
export type RowPath = 'thread' | 'subgroup' | 'registers';
export type RowKernel = 'softmax' | 'layerNorm';

/**
 * The path for wide rows where the device can run them. Defaults measured on lavapipe at [4096, 1024]: softmax
 * gains from a subgroup per row (1.02–1.17×) and more from one holding the row in registers (8.1 vs 10.9 ms GPU,
 * thread 11.7); layer norm ties (2.74–2.78 vs 2.77–2.97 GB/s), so it keeps a thread per row; kernels/tune.ts
 * measures them per adapter.
 */
const rowPaths: Record<RowKernel, RowPath> = { softmax: 'registers', layerNorm: 'thread' };
const DEFAULT_ROW_PATHS = { ...rowPaths };

/** The path a row kernel takes now (tuned, or the default). */
export const rowPath = (kernel: RowKernel): RowPath => rowPaths[kernel];

/** The fixed default path of a row kernel. */
export const rowPathDefault = (kernel: RowKernel): RowPath => DEFAULT_ROW_PATHS[kernel];

/** Installs measured row paths (an empty object restores the defaults). */
export function setRowTuning(paths: Partial<Record<RowKernel, RowPath>>): void {
  Object.assign(rowPaths, DEFAULT_ROW_PATHS, paths);
}

/** The subgroup width this device could walk a wide row with (rows ≥ 256 floats read as vec4), or null. */
export function rowLanes(D: number, w: Width): number | null {
  const lanes = getEngine().gpu.subgroupSize;
  return w === 4 && D >= 256 && lanes !== null && WG % lanes === 0 ? lanes : null;
}

/** The subgroup width `kernel` walks rows of D floats with on this device (null: one thread per row). */
export function rowKernelLanes(kernel: RowKernel, D: number, w: Width, path: RowPath = rowPaths[kernel]): number | null {
  return path === 'thread' ? null : rowLanes(D, w);
}

/** Most values of V each lane of a 'registers' row keeps (a 1024-wide row over 8 lanes: 32 vec4s). */
const MAX_REGISTER_CHUNKS = 64;

/**
 * How many values of V each lane holds when a subgroup keeps a row of D floats in registers, or null where that
 * path cannot serve the row (no fixed subgroup width, a row that does not split evenly, or too many registers).
 */
export function registerChunks(D: number, w: Width): number | null {
  const lanes = rowLanes(D, w);
  if (lanes === null || (D / w) % lanes !== 0) return null;
  const chunks = D / w / lanes;
  return chunks <= MAX_REGISTER_CHUNKS ? chunks : null;
}

export function softmaxRaw(x: Tensor, log: boolean, path?: RowPath): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const { src, rows, D } = rowsOf(op, x, true);
  const half = x.dtype === 'f16';
  const out = Tensor.empty(x.shape, x.dtype);
  const w = widthFor(D, src.offset);
  const chosen = path ?? rowPaths.softmax;
  // Rows that the register path cannot hold take the subgroup path.
  const chunks = chosen === 'registers' ? registerChunks(D, w) : null;
  const lanes = rowKernelLanes('softmax', D, w, chosen === 'registers' && chunks === null ? 'subgroup' : chosen);
  const row = lanes ? subgroupRow(lanes) : THREAD_ROW;
  const source = chunks !== null ? registerSoftmax(w, chunks, row, log) : streamingSoftmax(w, row, log);
  const walk = chunks !== null ? `registers${lanes}x${chunks}` : lanes ? `subgroup${lanes}` : 'thread';
  launchRows(
    `rows:${op}:${w}:${walk}:${x.dtype}`,
    () => ({
      name: `${op}${w === 4 ? '_vec4' : ''}${lanes ? `_${walk}` : ''}${half ? '_f16' : ''}`,
      outputs: { y: storageOf(w, x.dtype) },
      inputs: { x: storageOf(w, x.dtype) },
      uniforms: { rows: 'u32', W: 'u32', off: 'u32' } as const,
      // f16 rows: values are read as f32, the statistics stay f32, each store rounds once.
      ...halfKernel(source, half ? { x: vecType(w), y: vecType(w) } : {}, half ? { y: halfVecType(w) } : {}, row.directives),
    }),
    { y: out.bufferFor(op), x: src.bufferFor(op) },
    { rows, W: D / w, off: src.offset / w },
    lanes ? rows * lanes : rows,
  );
  src.dispose();
  return out;
}

/**
 * Softmax streaming the row (a thread or a subgroup per row): a pass for the maximum, then one that stores
 * exp(x − m) while summing, then an in-place rescale — one exp per element instead of two. Log-softmax sums
 * in its second pass and writes x − logsumexp in its third.
 */
function streamingSoftmax(w: Width, row: typeof THREAD_ROW, log: boolean): string {
  const loop = 'for (var j = first; j < u.W; j += step)';
  const body = log
    ? `var sv = V(0.0);
  ${loop} { sv += exp(x[xb + j] - m); }
  let lse = m + log(${row.sum('hsum(sv)')});
  ${loop} { y[base + j] = x[xb + j] - lse; }`
    : `var sv = V(0.0);
  ${loop} { let e = exp(x[xb + j] - m); y[base + j] = e; sv += e; }
  let inv = 1.0 / ${row.sum('hsum(sv)')};
  ${loop} { y[base + j] = y[base + j] * inv; }`;
  return `${prelude(w)}
${row.entry}
  let xb = u.off + base;
  var mv = V(-${F32_MAX});
  ${loop} { mv = max(mv, x[xb + j]); }
  let m = ${row.max('hmax(mv)')};
  ${body}
}`;
}

/**
 * Softmax with the row held in registers: each of a subgroup's lanes loads its `chunks` values of V once, and the
 * maximum, the exponentials and their sum are taken there; the row is read once and written once (the
 * streaming kernel reads it twice and writes it twice, rescaling its stored exponentials in place). One
 * pipeline per row width (the chunk count is a compile-time constant, so the array stays in registers).
 */
function registerSoftmax(w: Width, chunks: number, row: typeof THREAD_ROW, log: boolean): string {
  const each = `for (var c = 0u; c < ${chunks}u; c++)`;
  return `${prelude(w)}
${row.entry}
  let xb = u.off + base;
  var r: array<V, ${chunks}>;
  var mv = V(-${F32_MAX});
  ${each} { let v = x[xb + first + c * step]; r[c] = v; mv = max(mv, v); }
  let m = ${row.max('hmax(mv)')};
  var sv = V(0.0);
  ${
    log
      ? `${each} { sv += exp(r[c] - m); }
  let lse = m + log(${row.sum('hsum(sv)')});
  ${each} { y[base + first + c * step] = r[c] - lse; }`
      : `${each} { let e = exp(r[c] - m); r[c] = e; sv += e; }
  let inv = 1.0 / ${row.sum('hsum(sv)')};
  ${each} { y[base + first + c * step] = r[c] * inv; }`
  }
}`;
}

/**
 * Backward of softmax (y = softmax(x)): dx = y·(g − Σ g·y); of log-softmax: dx = g − exp(y)·Σ g. On f16 y and g
 * the sum and the arithmetic are f32 and dx is rounded once.
 */
export function softmaxBackwardRaw(y: Tensor, g: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmaxBackward' : 'softmaxBackward';
  if (y.dtype !== g.dtype) throw new DTypeError(`${op}: the output and its gradient must share a dtype, got ${y.dtype} and ${g.dtype}`);
  const half = y.dtype === 'f16';
  const gc = contiguousCopy(g);
  const yc = contiguousCopy(y);
  const D = y.shape[y.rank - 1];
  const rows = y.size / D;
  const out = Tensor.empty(y.shape, y.dtype);
  const w = widthFor(D, gc.offset, yc.offset);
  const [reduce, write] = log
    ? ['sv += g[gb + j];', 'dx[base + j] = g[gb + j] - exp(y[yb + j]) * s;']
    : ['sv += g[gb + j] * y[yb + j];', 'dx[base + j] = y[yb + j] * (g[gb + j] - s);'];
  const source = `${prelude(w)}
${ROW_ID}
  let yb = u.offY + base;
  let gb = u.offG + base;
  var sv = V(0.0);
  for (var j = 0u; j < u.W; j++) { ${reduce} }
  let s = hsum(sv);
  for (var j = 0u; j < u.W; j++) { ${write} }
}`;
  launchRows(
    `rows:${op}:${w}:${y.dtype}`,
    () => ({
      name: `${op}${w === 4 ? '_vec4' : ''}${half ? '_f16' : ''}`,
      outputs: { dx: storageOf(w, y.dtype) },
      inputs: { y: storageOf(w, y.dtype), g: storageOf(w, y.dtype) },
      uniforms: { rows: 'u32', W: 'u32', offY: 'u32', offG: 'u32' } as const,
      ...halfKernel(source, half ? { y: vecType(w), g: vecType(w) } : {}, half ? { dx: halfVecType(w) } : {}),
    }),
    { dx: out.bufferFor(op), y: yc.bufferFor(op), g: gc.bufferFor(op) },
    { rows, W: D / w, offY: yc.offset / w, offG: gc.offset / w },
    rows,
  );
  gc.dispose();
  yc.dispose();
  return out;
}

// ---- layer norm ---------------------------------------------------------------------------------------------

/** Forward: y = (x − mean) · rstd · weight + bias per row; also returns mean and rstd per row for backward. */
export function layerNormRaw(x: Tensor, weight: Tensor, bias: Tensor, eps: number, path?: RowPath): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const op = 'layerNorm';
  const { src, rows, D } = rowsOf(op, x, true);
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p.rank !== 1 || p.shape[0] !== D || (p.dtype !== 'f32' && p.dtype !== 'f16')) throw new ShapeError(`${op}: ${name} must be f32 or f16 of shape [${D}], got ${fmtShape(p.shape)} ${p.dtype}`);
  }
  const wc = contiguousCopy(weight);
  const bc = contiguousCopy(bias);
  const y = Tensor.empty(x.shape, x.dtype);
  const mean = Tensor.empty([rows]);
  const rstd = Tensor.empty([rows]);
  const w = widthFor(D, src.offset, wc.offset, bc.offset);
  // Wide rows may take one subgroup per row where subgroups have a fixed width, as softmax does.
  const lanes = rowKernelLanes('layerNorm', D, w, path);
  const walk = lanes ? subgroupRow(lanes) : THREAD_ROW;
  const loop = 'for (var j = first; j < u.W; j += step)';
  const dtypes = { x: x.dtype, w: wc.dtype, b: bc.dtype };
  const half = Object.values(dtypes).includes('f16');
  const source = `${prelude(w)}
${walk.entry}
  let xb = u.off + base;
  var sv = V(0.0);
  ${loop} { sv += x[xb + j]; }
  let mu = ${walk.sum('hsum(sv)')} / f32(u.D);
  var vv = V(0.0);
  ${loop} { let d = x[xb + j] - mu; vv += d * d; }
  let r = inverseSqrt(${walk.sum('hsum(vv)')} / f32(u.D) + u.eps);
  ${loop} { y[base + j] = (x[xb + j] - mu) * r * w[u.offW + j] + b[u.offB + j]; }
  meanOut[row] = mu;
  rstdOut[row] = r;
}`;
  const widen = Object.fromEntries(Object.entries(dtypes).filter(([, d]) => d === 'f16').map(([name]) => [name, vecType(w)]));
  launchRows(
    `rows:layerNorm:${w}:${lanes ? `subgroup${lanes}` : 'thread'}:${dtypes.x}${dtypes.w}${dtypes.b}`,
    () => ({
      name: `${op}${w === 4 ? '_vec4' : ''}${lanes ? `_subgroup${lanes}` : ''}${half ? `_${dtypes.x}_${dtypes.w}` : ''}`,
      outputs: { y: storageOf(w, dtypes.x), meanOut: 'f32' as const, rstdOut: 'f32' as const },
      inputs: { x: storageOf(w, dtypes.x), w: storageOf(w, dtypes.w), b: storageOf(w, dtypes.b) },
      uniforms: { rows: 'u32', W: 'u32', D: 'u32', off: 'u32', offW: 'u32', offB: 'u32', eps: 'f32' } as const,
      // f16 operands are read as f32 (statistics in f32); an f16 output is rounded once per store.
      ...halfKernel(source, widen, dtypes.x === 'f16' ? { y: halfVecType(w) } : {}, walk.directives),
    }),
    { y: y.bufferFor(op), meanOut: mean.bufferFor(op), rstdOut: rstd.bufferFor(op), x: src.bufferFor(op), w: wc.bufferFor(op), b: bc.bufferFor(op) },
    { rows, W: D / w, D, off: src.offset / w, offW: wc.offset / w, offB: bc.offset / w, eps },
    lanes ? rows * lanes : rows,
  );
  src.dispose();
  wc.dispose();
  bc.dispose();
  return { y, mean, rstd };
}

/**
 * Backward of layer norm. Per row (x̂ = (x − mean)·rstd, ĝ = g·weight):
 *   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂));
 * per column: dweight = Σ_rows g·x̂, dbias = Σ_rows g (a second kernel, one thread per column).
 */
export function layerNormBackwardRaw(g: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
  const op = 'layerNormBackward';
  if (g.dtype !== x.dtype) throw new DTypeError(`${op}: the input and its gradient must share a dtype, got ${x.dtype} and ${g.dtype}`);
  // f16 g, x or weight are read as f32; dx (x's dtype) and dw, db (the weight's) are rounded once at the store.
  const half = [g, x, weight].filter((t) => t.dtype === 'f16').length > 0;
  const D = x.shape[x.rank - 1];
  const rows = x.size / D;
  const [gc, xc, wc] = [contiguousCopy(g), contiguousCopy(x), contiguousCopy(weight)];
  const dx = Tensor.empty(x.shape, x.dtype);
  const dw = Tensor.empty([D], weight.dtype);
  const db = Tensor.empty([D], weight.dtype);
  const w = widthFor(D, gc.offset, xc.offset, wc.offset);
  const inputs = { g: storageOf(w, g.dtype), x: storageOf(w, x.dtype), w: storageOf(w, weight.dtype), mean: 'f32' as const, rstd: 'f32' as const };
  const widen = Object.fromEntries(Object.entries({ g, x, w: weight }).filter(([, t]) => t.dtype === 'f16').map(([name]) => [name, vecType(w)]));
  const rounded = (names: string[], dtype: DType) => (dtype === 'f16' ? Object.fromEntries(names.map((n) => [n, halfVecType(w)])) : {});
  const compile = (source: string, round: Record<string, string>) => halfKernel(source, widen, round);
  const key = `${w}:${g.dtype}:${weight.dtype}`;
  const uniforms = { rows: 'u32', W: 'u32', D: 'u32', offG: 'u32', offX: 'u32', offW: 'u32' } as const;
  const uniformValues = { rows, W: D / w, D, offG: gc.offset / w, offX: xc.offset / w, offW: wc.offset / w };
  const inputBuffers = { g: gc.bufferFor(op), x: xc.bufferFor(op), w: wc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op) };
  launchRows(
    `rows:layerNormBackward:dx:${key}`,
    () => ({
      name: `${op}_dx${w === 4 ? '_vec4' : ''}${half ? '_f16' : ''}`,
      outputs: { dx: storageOf(w, x.dtype) },
      inputs,
      uniforms,
      ...compile(`${prelude(w)}
${ROW_ID}
  let mu = mean[row];
  let r = rstd[row];
  var sg = V(0.0);
  var sgx = V(0.0);
  for (var j = 0u; j < u.W; j++) {
    let gh = g[u.offG + base + j] * w[u.offW + j];
    sg += gh;
    sgx += gh * (x[u.offX + base + j] - mu) * r;
  }
  let n = f32(u.D);
  let mg = hsum(sg) / n;
  let mgx = hsum(sgx) / n;
  for (var j = 0u; j < u.W; j++) {
    let gh = g[u.offG + base + j] * w[u.offW + j];
    let xh = (x[u.offX + base + j] - mu) * r;
    dx[base + j] = r * (gh - mg - xh * mgx);
  }
}`, rounded(['dx'], x.dtype)),
    }),
    { dx: dx.bufferFor(op), ...inputBuffers },
    uniformValues,
    rows,
  );
  launchRows(
    `rows:layerNormBackward:dwdb:${key}`,
    () => ({
      name: `${op}_dw_db${w === 4 ? '_vec4' : ''}${half ? '_f16' : ''}`,
      outputs: { dw: storageOf(w, weight.dtype), db: storageOf(w, weight.dtype) },
      inputs,
      uniforms,
      ...compile(`${prelude(w)}
${perItemEntry(WG, 'col')}
  if (col >= u.W) { return; }
  var sw = V(0.0);
  var sb = V(0.0);
  for (var row = 0u; row < u.rows; row++) {
    let gv = g[u.offG + row * u.W + col];
    sw += gv * (x[u.offX + row * u.W + col] - mean[row]) * rstd[row];
    sb += gv;
  }
  dw[col] = sw;
  db[col] = sb;
}`, rounded(['dw', 'db'], weight.dtype)),
    }),
    { dw: dw.bufferFor(op), db: db.bufferFor(op), ...inputBuffers },
    uniformValues,
    D / w,
  );
  gc.dispose();
  xc.dispose();
  wc.dispose();
  return { dx, dw, db };
}

// ---- cross-entropy ------------------------------------------------------------------------------------------

function checkLabels(op: string, logits: Tensor, labels: Tensor): { rows: number; C: number } {
  if (logits.rank !== 2) throw new ShapeError(`${op}: logits must be [N, C], got ${fmtShape(logits.shape)}`);
  if (logits.dtype === 'i32') throw new DTypeError(`${op}: logits must be f32 or f16, got i32`);
  if (labels.dtype !== 'i32') throw new DTypeError(`${op}: labels must be i32, got ${labels.dtype}`);
  const [rows, C] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== rows) throw new ShapeError(`${op}: labels must be [${rows}] for logits ${fmtShape(logits.shape)}, got ${fmtShape(labels.shape)}`);
  const host = labels.hostData;
  if (host) {
    const bad = host.findIndex((v) => v < 0 || v >= C);
    if (bad >= 0) throw new RangeError(`${op}: label ${host[bad]} at position ${bad} is outside [0, ${C})`);
  }
  return { rows, C };
}

/** Per-row loss −log softmax(logits)[label]; an out-of-range label sets the engine's error flag. */
export function crossEntropyRaw(logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropy';
  const { rows, C } = checkLabels(op, logits, labels);
  const half = logits.dtype === 'f16';
  const [x, lab] = [contiguousCopy(logits), contiguousCopy(labels)];
  const out = Tensor.empty([rows]);
  const engine = getEngine();
  const w = widthFor(C, x.offset);
  launchRows(
    `rows:crossEntropy:${w}:${logits.dtype}`,
    () => ({
      name: `${op}${w === 4 ? '_vec4' : ''}${half ? '_f16' : ''}`,
      outputs: { loss: 'f32' as const, flag: 'u32' as const },
      inputs: { x: storageOf(w, logits.dtype), labels: 'i32' as const },
      uniforms: { rows: 'u32', W: 'u32', D: 'u32', off: 'u32', offL: 'u32', errCode: 'u32' } as const,
      // f16 logits are read as f32 (open_clip's amp upcasts them too): the loss is f32 either way.
      ...halfKernel(`${prelude(w)}
${ROW_ID}
  let xb = u.off + base;
  let label = labels[u.offL + row];
  if (label < 0 || u32(label) >= u.D) { flag[0] = u.errCode; loss[row] = bitcast<f32>(0x7fc00000u | (u.D & 0u)); return; }
  var mv = V(-${F32_MAX});
  for (var j = 0u; j < u.W; j++) { mv = max(mv, x[xb + j]); }
  let m = hmax(mv);
  var sv = V(0.0);
  var picked = V(0.0);
  for (var j = 0u; j < u.W; j++) { sv += exp(x[xb + j] - m); picked += onehot(j, u32(label)) * x[xb + j]; }
  loss[row] = m + log(hsum(sv)) - hsum(picked);
}`, half ? { x: vecType(w) } : {}, {}),
    }),
    { loss: out.bufferFor(op), flag: engine.errorFlag, x: x.bufferFor(op), labels: lab.bufferFor(op) },
    { rows, W: C / w, D: C, off: x.offset / w, offL: lab.offset, errCode: engine.errorCode(`${op}: a label is outside [0, ${C})`) },
    rows,
  );
  x.dispose();
  lab.dispose();
  return out;
}

/** Backward: dlogits[r, j] = g[r] · (softmax(logits)[r, j] − [j = label[r]]). */
export function crossEntropyBackwardRaw(g: Tensor, logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropyBackward';
  if (g.dtype !== 'f32') throw new DTypeError(`${op}: the loss gradient must be f32 (the loss is), got ${g.dtype}`);
  const [rows, C] = logits.shape;
  const half = logits.dtype === 'f16';
  const [x, lab, gc] = [contiguousCopy(logits), contiguousCopy(labels), contiguousCopy(g)];
  const out = Tensor.empty(logits.shape, logits.dtype);
  const w = widthFor(C, x.offset);
  launchRows(
    `rows:crossEntropyBackward:${w}:${logits.dtype}`,
    () => ({
      name: `${op}${w === 4 ? '_vec4' : ''}${half ? '_f16' : ''}`,
      outputs: { dx: storageOf(w, logits.dtype) },
      inputs: { x: storageOf(w, logits.dtype), labels: 'i32' as const, g: 'f32' as const },
      uniforms: { rows: 'u32', W: 'u32', off: 'u32', offL: 'u32', offG: 'u32' } as const,
      // f16 logits: read as f32, the softmax in f32, dlogits rounded once to f16.
      ...halfKernel(`${prelude(w)}
${ROW_ID}
  let xb = u.off + base;
  let label = u32(labels[u.offL + row]);
  var mv = V(-${F32_MAX});
  for (var j = 0u; j < u.W; j++) { mv = max(mv, x[xb + j]); }
  let m = hmax(mv);
  var sv = V(0.0);
  for (var j = 0u; j < u.W; j++) { sv += exp(x[xb + j] - m); }
  let gr = g[u.offG + row];
  let scale = gr / hsum(sv);
  for (var j = 0u; j < u.W; j++) { dx[base + j] = exp(x[xb + j] - m) * scale - onehot(j, label) * gr; }
}`, half ? { x: vecType(w) } : {}, half ? { dx: halfVecType(w) } : {}),
    }),
    { dx: out.bufferFor(op), x: x.bufferFor(op), labels: lab.bufferFor(op), g: gc.bufferFor(op) },
    { rows, W: C / w, off: x.offset / w, offL: lab.offset, offG: gc.offset },
    rows,
  );
  x.dispose();
  lab.dispose();
  gc.dispose();
  return out;
}
