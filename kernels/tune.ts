// Kernel selection by measurement, per adapter. For every matmul shape bucket (small / medium / large M, N, K)
// the variants this device can run are timed on a shape of that bucket, and for softmax and layer norm the two
// ways of walking a wide row (a thread or a subgroup per row) (GPU timestamps where the adapter has
// them, else the wall clock; median of three after a warm-up), and the fastest is kept. The engine consults the
// choices (kernels/matmul.ts matmulConfig) and falls back to the fixed default for anything not tuned. Tuning
// takes seconds on lavapipe; kernels/io/tuning.ts caches the result per adapter and driver in Node, a page
// keeps it in memory.
import { getEngine } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { randNormal } from './creation.ts';
import { layerNormRaw, rowLanes, rowPathDefault, setRowTuning, softmaxRaw, type RowKernel, type RowPath } from './rowwise.ts';
import { BUCKET_SIZES, MATMUL_VARIANTS, defaultMatmulConfig, matmulBucket, matmulRaw, setMatmulTuning, unsupported, type MatmulConfig } from './matmul.ts';

export interface Tuning {
  /** The adapter (with its driver) the choices were measured on. */
  adapter: string;
  /** Per matmul bucket: the chosen variant and the rates (GFLOP/s) of every candidate, fastest first. */
  matmul: Record<string, { choice: MatmulConfig; rates: { config: MatmulConfig; gflops: number }[] }>;
  /** Per row kernel (where the device can walk rows by subgroup): the chosen path and each path's GB/s. */
  rows?: Partial<Record<RowKernel, { choice: RowPath; rates: { path: RowPath; gbps: number }[] }>>;
}

export const variantName = (c: MatmulConfig) => (c.version === 'v1' ? 'v1' : `${c.version} ${c.tm}x${c.tn}`);

/**
 * Milliseconds of one `run` (one dispatch) per candidate, median over `reps` rounds that interleave the
 * candidates (A B C A B C …, so a slow moment of a shared machine hits all of them); each sample times
 * `inner` back-to-back dispatches, enough work that timer resolution and launch noise do not decide.
 */
async function timeInterleaved(runs: (() => Tensor)[], inner: number, reps = 5): Promise<number[]> {
  const engine = getEngine();
  for (const run of runs) run().dispose();
  await engine.sync();
  const samples = runs.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [i, run] of runs.entries()) {
      const outs: Tensor[] = [];
      const t0 = performance.now();
      const gpuMs = await engine.timeGpu(() => {
        for (let j = 0; j < inner; j++) outs.push(run());
      });
      if (gpuMs === null) await engine.sync();
      samples[i].push((gpuMs ?? performance.now() - t0) / inner);
      for (const o of outs) o.dispose();
    }
  }
  return samples.map((s) => s.sort((a, b) => a - b)[Math.floor(reps / 2)]);
}

/** Times every runnable matmul variant (the naive v1 excluded) in every bucket; `log` hears each bucket's choice. */
export async function tuneMatmul(adapter: string, log: (line: string) => void = () => {}): Promise<Tuning> {
  // The default first: timings this close are noise, and the default stays unless another variant wins clearly.
  const fixed = defaultMatmulConfig();
  const candidates = [fixed, ...MATMUL_VARIANTS.filter((c) => c.version !== 'v1' && unsupported(c) === null && variantName(c) !== variantName(fixed))];
  const result: Tuning = { adapter, matmul: {} };
  const classes = Object.keys(BUCKET_SIZES);
  for (const m of classes) for (const n of classes) for (const k of classes) {
    const [M, N, K] = [BUCKET_SIZES[m], BUCKET_SIZES[n], BUCKET_SIZES[k]];
    const a = randNormal([M, K]);
    const b = randNormal([K, N]);
    const flops = 2 * M * N * K;
    const inner = Math.min(64, Math.max(1, Math.ceil(3e7 / flops)));
    const ms = await timeInterleaved(candidates.map((config) => () => matmulRaw(a, b, {}, config)), inner);
    const rates = candidates.map((config, i) => ({ config, gflops: flops / ms[i] / 1e6 }));
    a.dispose();
    b.dispose();
    const baseline = rates[0].gflops;
    rates.sort((x, y) => y.gflops - x.gflops);
    const bucket = matmulBucket(M, N, K);
    // Another variant replaces the default only when it is at least 10% faster (closer than that is noise here).
    const choice = rates[0].gflops >= 1.1 * baseline ? rates[0].config : fixed;
    result.matmul[bucket] = { choice, rates };
    log(`matmul ${bucket} [${M}×${K}]·[${K}×${N}]: ${variantName(choice)} (best ${variantName(rates[0].config)} ${rates[0].gflops.toFixed(1)} GFLOP/s, default ${variantName(fixed)} ${baseline.toFixed(1)})`);
  }
  return result;
}

/** Times softmax and layer norm over wide rows ([4096, 1024]) with a thread and with a subgroup per row. */
export async function tuneRows(log: (line: string) => void = () => {}): Promise<Tuning['rows']> {
  const [rows, D] = [4096, 1024];
  if (rowLanes(D, 4) === null) return {};
  const x = randNormal([rows, D]);
  const w = randNormal([D]);
  const b = randNormal([D]);
  const result: NonNullable<Tuning['rows']> = {};
  const paths: RowPath[] = ['thread', 'subgroup'];
  const kernels: [RowKernel, (path: RowPath) => Tensor][] = [
    ['softmax', (path) => softmaxRaw(x, false, path)],
    ['layerNorm', (path) => {
      const { y, mean, rstd } = layerNormRaw(x, w, b, 1e-5, path);
      mean.dispose();
      rstd.dispose();
      return y;
    }],
  ];
  for (const [kernel, run] of kernels) {
    const ms = await timeInterleaved(paths.map((path) => () => run(path)), 1);
    const rates = paths.map((path, i) => ({ path, gbps: (2 * rows * D * 4) / ms[i] / 1e6 }));
    const fixed = rates.find((r) => r.path === rowPathDefault(kernel))!;
    const best = [...rates].sort((p, q) => q.gbps - p.gbps)[0];
    const choice = best.gbps >= 1.1 * fixed.gbps ? best.path : fixed.path;
    result[kernel] = { choice, rates };
    log(`${kernel} [${rows}×${D}]: ${choice} per row (${rates.map((r) => `${r.path} ${r.gbps.toFixed(2)} GB/s`).join(', ')}; default ${fixed.path})`);
  }
  for (const t of [x, w, b]) t.dispose();
  return result;
}

/** Makes the engine use `tuning`'s choices (ignored, with null returned, when it was measured on another adapter). */
export function applyTuning(tuning: Tuning, adapter: string): Tuning | null {
  if (tuning.adapter !== adapter) return null;
  setMatmulTuning(Object.fromEntries(Object.entries(tuning.matmul).map(([bucket, t]) => [bucket, t.choice])));
  setRowTuning(Object.fromEntries(Object.entries(tuning.rows ?? {}).map(([kernel, t]) => [kernel, t.choice])));
  return tuning;
}
