// Which kernel variant runs: the one place that decides, for every family with more than one way to compute
// the same thing (PyTorch's cuBLAS heuristics and tinygrad's BEAM keep this apart from the kernels in the same
// way). Variant files only build WGSL and launch; they never choose. The inputs are the problem (shape, operand
// layout), what the device can run (subgroup width) and the tuning table that kernels/tune.ts measured on this
// adapter, installed with useTuningTable(). Without a table, or for a problem it does not cover, the fixed
// defaults below apply; every fallback is written next to the choice it replaces.
//
// Which matmul runs for [400, 768] × [768, 2304] in f16 on this adapter? matmulChoice(400, 2304, 768, 'nn')
// answers with the variant and why (`explainMatmul` says it in words; `npm run tune -- --explain
// 400x768x2304` prints it with the kernel's name, which is the file name CLIPGPU_DUMP_WGSL=<dir> writes).
import { getEngine } from '../core/engine.ts';
import type { Tensor } from '../core/tensor.ts';
import { FUSED_HEAD_DIM, MAX_HEAD_DIM, attentionLanes } from './attention.ts';
import type { MatmulConfig } from './matmul/shared.ts';
import { V3_LANES } from './matmul/v3.ts';
import { registerChunks, rowLanes, type Width } from './rows.ts';

// ---- the tuning table ---------------------------------------------------------------------------------------

/** A measured time: median milliseconds and the interquartile range of the interleaved repeats. */
export interface Timing {
  ms: number;
  q25: number;
  q75: number;
}

/** What kernels/tune.ts measured on one adapter; only `choice` / `fused` are read here, the rest documents it. */
export interface Tuning {
  /** The adapter (with its driver) the choices were measured on. */
  adapter: string;
  /**
   * Per matmul shape bucket ("mll:nt", see matmulBucket) and per exact shape ("400x2304x768:nn", M×N×K): the
   * chosen variant and every candidate's rate and timing, fastest first.
   */
  matmul: Record<string, { choice: MatmulConfig; rates: { config: MatmulConfig; gflops: number; timing?: Timing }[] }>;
  /** Per row kernel (where the device can walk rows by subgroup): the chosen path and each path's GB/s. */
  rows?: Partial<Record<RowKernel, { choice: RowPath; rates: { path: RowPath; gbps: number; timing?: Timing }[] }>>;
  /** 64-wide heads, causal and not: fused kernels or batched matmuls, and each path's GFLOP/s. */
  attention?: Partial<Record<AttentionKind, { fused: boolean; rates: { fused: boolean; gflops: number; timing?: Timing }[] }>>;
}

/** The installed table: the only kernel-choice state in the library. */
let table: Tuning | null = null;

/**
 * Installs `tuning` when it was measured on `adapter` (returns it), else leaves the defaults (returns null).
 * null uninstalls: every choice goes back to its default.
 */
export function useTuningTable(tuning: Tuning | null, adapter = getEngine().gpu.name): Tuning | null {
  table = tuning && tuning.adapter === adapter ? tuning : null;
  return table;
}

/** The installed table (null: defaults only). */
export const tuningTable = (): Tuning | null => table;

// ---- matmul -------------------------------------------------------------------------------------------------

/**
 * How the operands lie in memory, which decides the loads a variant can vectorise: A is 'n' when its rows are
 * contiguous along k (row-major) and 't' otherwise (a transposed view: the xᵀ·g of a weight gradient); B is 'n'
 * when contiguous along n and 't' otherwise (x·Wᵀ with PyTorch's [out, in] weights). A forward linear layer is
 * 'nt', its input gradient g·W 'nn', its weight gradient xᵀ·g 'tn'.
 */
export type MatmulLayout = 'nn' | 'nt' | 'tn' | 'tt';
export const TUNED_LAYOUTS: MatmulLayout[] = ['nn', 'nt', 'tn'];
export const layoutOf = (a: Tensor, b: Tensor): MatmulLayout =>
  `${a.strides[a.rank - 1] === 1 ? 'n' : 't'}${b.strides[b.rank - 1] === 1 ? 'n' : 't'}` as MatmulLayout;

/** Size class of a matmul dimension for tuning: small (≤ 96), medium (≤ 384) or large. */
const sizeClass = (d: number) => (d <= 96 ? 's' : d <= 384 ? 'm' : 'l');

/** The tuning bucket of an [M, K] · [K, N] product: a size class per dimension ("sml"), and a layout other than 'nn'. */
export const matmulBucket = (M: number, N: number, K: number, layout: MatmulLayout = 'nn'): string =>
  `${sizeClass(M)}${sizeClass(N)}${sizeClass(K)}${layout === 'nn' ? '' : `:${layout}`}`;

/** The table key of one exact shape. */
export const matmulShapeKey = (M: number, N: number, K: number, layout: MatmulLayout = 'nn'): string => `${M}x${N}x${K}:${layout}`;

/**
 * The fixed default, from `npm run bench` on lavapipe (bench/RESULTS.md): v3 with 4 columns per lane where the
 * device has 8-lane subgroups, else v2 with an 8×8 block.
 */
export function defaultMatmulConfig(): MatmulConfig {
  return getEngine().gpu.subgroupSize === V3_LANES ? { version: 'v3', tm: 8, tn: 4 } : { version: 'v2', tm: 8, tn: 8 };
}

/** Why this device cannot run a variant (then it is refused by name, never silently replaced), or null. */
export function matmulUnsupported(config: MatmulConfig): string | null {
  const width = getEngine().gpu.subgroupSize;
  if (config.version !== 'v3' || width === V3_LANES) return null;
  const has = width === null ? 'no fixed-width subgroups' : `${width}-lane subgroups`;
  return `matmul v3 needs subgroups of exactly ${V3_LANES} lanes; this device has ${has}`;
}

/** A choice and where it came from. */
export interface MatmulChoice {
  config: MatmulConfig;
  source: 'tuned shape' | 'tuned bucket' | 'default';
  /** The table key that decided ('' for the default). */
  key: string;
}

/**
 * The variant for an [M, K] · [K, N] product in `layout`, first match wins:
 *   1. the table's entry for exactly this shape and layout;
 *   2. the table's entry for its size bucket and layout;
 *   3. the default (defaultMatmulConfig).
 * A table entry the device cannot run (a table copied from another machine with the same adapter name) falls
 * through to the next rule. The dtype does not enter: f16 and mixed operands take the f32 choice (the variants
 * widen every load to f32 and the tuner measures f32), so one table serves every precision.
 */
export function matmulChoice(M: number, N: number, K: number, layout: MatmulLayout = 'nn'): MatmulChoice {
  for (const [key, source] of [[matmulShapeKey(M, N, K, layout), 'tuned shape'], [matmulBucket(M, N, K, layout), 'tuned bucket']] as const) {
    const entry = table?.matmul[key];
    if (entry && matmulUnsupported(entry.choice) === null) return { config: entry.choice, source, key };
  }
  return { config: defaultMatmulConfig(), source: 'default', key: '' };
}

/** matmulChoice's config alone. */
export const matmulConfig = (M = 0, N = 0, K = 0, layout: MatmulLayout = 'nn'): MatmulConfig => matmulChoice(M, N, K, layout).config;

/** A variant's name in logs and tables: "v1", "v2 8x8", "v3 8x4", "v4 8x4". */
export const variantName = (c: MatmulConfig) => (c.version === 'v1' ? 'v1' : `${c.version} ${c.tm}x${c.tn}`);

/** One line saying which matmul runs for the product and why. */
export function explainMatmul(M: number, N: number, K: number, layout: MatmulLayout = 'nn'): string {
  const { config, source, key } = matmulChoice(M, N, K, layout);
  const why =
    source === 'default'
      ? `no tuned entry for shape ${matmulShapeKey(M, N, K, layout)} or bucket ${matmulBucket(M, N, K, layout)}`
      : `table entry ${key}`;
  return `[${M}×${K}]·[${K}×${N}] (${layout}): ${variantName(config)} — ${source} (${why})`;
}

// ---- row kernels (softmax, layer norm) ----------------------------------------------------------------------

/**
 * How a row kernel walks a row: one thread, or one subgroup; softmax also has 'registers', a subgroup whose
 * lanes hold the whole row in registers (kernels/softmax.ts).
 */
export type RowPath = 'thread' | 'subgroup' | 'registers';
export type RowKernel = 'softmax' | 'layerNorm';

/**
 * Defaults measured on lavapipe at [4096, 1024]: softmax gains from a subgroup per row (1.02–1.17×) and more from
 * one holding the row in registers (8.1 vs 10.9 ms GPU, thread 11.7); layer norm ties (2.74–2.78 vs 2.77–2.97
 * GB/s), so it keeps a thread per row.
 */
export const ROW_PATH_DEFAULT: Record<RowKernel, RowPath> = { softmax: 'registers', layerNorm: 'thread' };

/** A row walk: the path taken, the lanes per row (null: one thread) and, for 'registers', values per lane. */
export interface RowWalk {
  path: RowPath;
  lanes: number | null;
  chunks: number | null;
}

/**
 * The walk `kernel` takes over rows of D floats read `w` at a time: the requested path (a benchmark's), else the
 * table's, else ROW_PATH_DEFAULT; then the fallbacks — 'registers' where the row does not split evenly over the
 * lanes or needs too many registers walks as 'subgroup'; 'subgroup' where the device has no fixed subgroup width
 * or the row is narrow (< 256 floats, or not vec4) walks as 'thread'.
 */
export function rowWalk(kernel: RowKernel, D: number, w: Width, requested?: RowPath): RowWalk {
  const wanted = requested ?? table?.rows?.[kernel]?.choice ?? ROW_PATH_DEFAULT[kernel];
  const chunks = wanted === 'registers' ? registerChunks(D, w) : null;
  if (chunks !== null) return { path: 'registers', lanes: rowLanes(D, w), chunks };
  const lanes = wanted === 'thread' ? null : rowLanes(D, w);
  return lanes === null ? { path: 'thread', lanes: null, chunks: null } : { path: 'subgroup', lanes, chunks: null };
}

// ---- attention ----------------------------------------------------------------------------------------------

/** The two kinds of attention the choice for wide heads is made for. */
export type AttentionKind = 'causal' | 'full';

/**
 * For heads wider than FUSED_HEAD_DIM (a subgroup per row) against batched matmuls, fwd + bwd on lavapipe
 * (bench/RESULTS.md): causal CLIP text [8, 77, 8 × 64] 3.53 vs 2.83 GFLOP/s, fused wins; ViT-B/32 image
 * [8, 50, 12 × 64] 3.33 vs 5.41, batched matmuls win.
 */
export const WIDE_FUSED_DEFAULT: Record<AttentionKind, boolean> = { causal: true, full: false };

/**
 * Whether attention over heads D wide runs the fused kernels (kernels/attention.ts) or batched matmuls around the
 * softmax kernel (nn/attention.ts attendUnfused): heads up to FUSED_HEAD_DIM always fuse (a thread holds a row,
 * 3–4× faster); heads over MAX_HEAD_DIM, or wide heads where no subgroup can share a row, never do; between, the
 * table's choice for causal / full attention, else WIDE_FUSED_DEFAULT.
 */
export function useFusedAttention(D: number, causal: boolean): boolean {
  if (D <= FUSED_HEAD_DIM) return true;
  if (D > MAX_HEAD_DIM || attentionLanes(D, 4) === 1) return false;
  const kind: AttentionKind = causal ? 'causal' : 'full';
  return table?.attention?.[kind]?.fused ?? WIDE_FUSED_DEFAULT[kind];
}
