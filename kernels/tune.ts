// Kernel selection by measurement, per adapter. For every matmul shape bucket (small / medium / large M, N, K)
// the variants this device can run are timed on a shape of that bucket; for softmax and layer norm the two
// ways of walking a wide row (a thread or a subgroup per row); for attention with 64-wide heads, causal and not,
// the fused kernels against batched matmuls and the softmax kernel, forward + backward (GPU timestamps where the
// adapter has them, else the wall clock; medians of interleaved rounds after a warm-up), and the fastest is kept. The engine consults the
// choices (kernels/matmul.ts matmulConfig) and falls back to the fixed default for anything not tuned. Tuning
// takes seconds on lavapipe; kernels/io/tuning.ts caches the result per adapter and driver in Node, a page
// keeps it in memory.
import { getEngine } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { randNormal } from './creation.ts';
import { attentionBackward, attentionForward, attentionLanes, setAttentionTuning, wideFusedDefault, type AttentionKind } from './attention.ts';
import { contiguousCopy, elementwise } from './elementwise.ts';
import { layerNormRaw, rowLanes, rowPathDefault, setRowTuning, softmaxBackwardRaw, softmaxRaw, type RowKernel, type RowPath } from './rowwise.ts';
import { BUCKET_SIZES, MATMUL_VARIANTS, TUNED_LAYOUTS, defaultMatmulConfig, matmulBucket, matmulRaw, setMatmulTuning, unsupported, type MatmulConfig } from './matmul.ts';

export interface Tuning {
  /** The adapter (with its driver) the choices were measured on. */
  adapter: string;
  /** Per matmul bucket: the chosen variant and the rates (GFLOP/s) of every candidate, fastest first. */
  matmul: Record<string, { choice: MatmulConfig; rates: { config: MatmulConfig; gflops: number }[] }>;
  /** Per row kernel (where the device can walk rows by subgroup): the chosen path and each path's GB/s. */
  rows?: Partial<Record<RowKernel, { choice: RowPath; rates: { path: RowPath; gbps: number }[] }>>;
  /** 64-wide heads, causal and not (where a subgroup can share a row): fused kernels or not, and each path's GFLOP/s. */
  attention?: Partial<Record<AttentionKind, { fused: boolean; rates: { fused: boolean; gflops: number }[] }>>;
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

/**
 * Times every runnable matmul variant (the naive v1 excluded) in every bucket, for each layout a layer's
 * products take (forward x·Wᵀ, input gradient g·W, weight gradient xᵀ·g: the loads a variant can vectorise
 * differ); `log` hears each bucket's choice.
 */
export async function tuneMatmul(adapter: string, log: (line: string) => void = () => {}): Promise<Tuning> {
  // The default first: timings this close are noise, and the default stays unless another variant wins clearly.
  const fixed = defaultMatmulConfig();
  const candidates = [fixed, ...MATMUL_VARIANTS.filter((c) => c.version !== 'v1' && unsupported(c) === null && variantName(c) !== variantName(fixed))];
  const result: Tuning = { adapter, matmul: {} };
  const classes = Object.keys(BUCKET_SIZES);
  for (const layout of TUNED_LAYOUTS) for (const m of classes) for (const n of classes) for (const k of classes) {
    const [M, N, K] = [BUCKET_SIZES[m], BUCKET_SIZES[n], BUCKET_SIZES[k]];
    const a = operand(M, K, layout[0] === 't');
    const b = operand(K, N, layout[1] === 't');
    const flops = 2 * M * N * K;
    const inner = Math.min(64, Math.max(1, Math.ceil(3e7 / flops)));
    const ms = await timeInterleaved(candidates.map((config) => () => matmulRaw(a, b, {}, config)), inner, 3);
    const rates = candidates.map((config, i) => ({ config, gflops: flops / ms[i] / 1e6 }));
    a.dispose();
    b.dispose();
    const baseline = rates[0].gflops;
    rates.sort((x, y) => y.gflops - x.gflops);
    const bucket = matmulBucket(M, N, K, layout);
    // Another variant replaces the default only when it is at least 10% faster (closer than that is noise here).
    const choice = rates[0].gflops >= 1.1 * baseline ? rates[0].config : fixed;
    result.matmul[bucket] = { choice, rates };
    log(`matmul ${bucket} [${M}×${K}]·[${K}×${N}]: ${variantName(choice)} (best ${variantName(rates[0].config)} ${rates[0].gflops.toFixed(1)} GFLOP/s, default ${variantName(fixed)} ${baseline.toFixed(1)})`);
  }
  return result;
}

/** A [rows, cols] operand, row-major or (transposed) a view of a [cols, rows] one. */
function operand(rows: number, cols: number, transposed: boolean): Tensor {
  if (!transposed) return randNormal([rows, cols]);
  const base = randNormal([cols, rows]);
  const view = base.view([rows, cols], [1, rows]);
  base.dispose();
  return view;
}

/** Times softmax and layer norm over wide rows ([4096, 1024]) with a thread and a subgroup per row, and softmax also
 * with a subgroup holding the row in registers. */
export async function tuneRows(log: (line: string) => void = () => {}): Promise<Tuning['rows']> {
  const [rows, D] = [4096, 1024];
  if (rowLanes(D, 4) === null) return {};
  const x = randNormal([rows, D]);
  const w = randNormal([D]);
  const b = randNormal([D]);
  const result: NonNullable<Tuning['rows']> = {};
  const kernels: [RowKernel, RowPath[], (path: RowPath) => Tensor][] = [
    ['softmax', ['thread', 'subgroup', 'registers'], (path) => softmaxRaw(x, false, path)],
    ['layerNorm', ['thread', 'subgroup'], (path) => {
      const { y, mean, rstd } = layerNormRaw(x, w, b, 1e-5, path);
      mean.dispose();
      rstd.dispose();
      return y;
    }],
  ];
  for (const [kernel, paths, run] of kernels) {
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

/**
 * Attention over 64-wide heads, forward + backward, fused (kernels/attention.ts) against what nn/attention.ts
 * runs otherwise — the scaled scores as a batched matmul, the causal mask added, the softmax kernel, a second
 * batched matmul and the heads merged back, then the four backward matmuls and the softmax backward — on
 * published shapes: CLIP text (causal, [4, 77, 8 × 64]) and ViT-B/32's image tower ([4, 50, 12 × 64]).
 */
export async function tuneAttention(log: (line: string) => void = () => {}): Promise<Tuning['attention']> {
  const D = 64;
  if (attentionLanes(D, 4) === 1) return {};
  const result: NonNullable<Tuning['attention']> = {};
  const shapes: [AttentionKind, number, number, number][] = [['causal', 4, 77, 8], ['full', 4, 50, 12]];
  for (const [kind, B, L, H] of shapes) {
    const causal = kind === 'causal';
    const [q, k, v, g] = [0, 1, 2, 3].map(() => randNormal([B, L, H, D]));
    const fused = () => {
      const saved = attentionForward(q, k, v, { causal });
      const grads = attentionBackward(g, saved, [true, true, true]);
      for (const t of [saved.q, saved.k, saved.v, saved.o, saved.lse, grads[1], grads[2]]) t!.dispose();
      return grads[0]!;
    };
    const mask = causal ? Tensor.from(Float32Array.from({ length: L * L }, (_, i) => (i % L > Math.floor(i / L) ? -Infinity : 0)), [L, L]) : null;
    const unfused = () => unfusedAttention(q, k, v, g, mask);
    const ms = await timeInterleaved([fused, unfused], 1);
    const flops = (causal ? 0.5 : 1) * 4 * B * H * L * L * D * 3; // forward 2 products, backward 4
    const rates = [true, false].map((isFused, i) => ({ fused: isFused, gflops: flops / ms[i] / 1e6 }));
    const fixed = rates.find((r) => r.fused === wideFusedDefault(kind))!;
    const best = [...rates].sort((p, q2) => q2.gflops - p.gflops)[0];
    const choice = best.gflops >= 1.1 * fixed.gflops ? best.fused : fixed.fused;
    result[kind] = { fused: choice, rates };
    log(`attention ${kind} [${B}, ${L}, ${H} × ${D}] fwd+bwd: ${choice ? 'fused' : 'batched matmuls'} (${rates.map((r) => `${r.fused ? 'fused' : 'matmuls'} ${r.gflops.toFixed(2)}`).join(', ')} GFLOP/s; default ${fixed.fused ? 'fused' : 'matmuls'})`);
    for (const t of [q, k, v, g, mask]) t?.dispose();
  }
  return result;
}

/** nn/attention.ts's unfused path on raw kernels, forward and backward; returns dq as [B, L, H, D] (the rest is
 * disposed). */
export function unfusedAttention(q: Tensor, k: Tensor, v: Tensor, g: Tensor, mask: Tensor | null): Tensor {
  const [B, L, H, D] = q.shape;
  const heads = (t: Tensor) => t.view([B, H, L, D], [t.strides[0], t.strides[2], t.strides[1], t.strides[3]]);
  const transposed = (t: Tensor) => t.view([B, H, D, L], [t.strides[0], t.strides[2], t.strides[3], t.strides[1]]);
  const last2 = (t: Tensor) => t.view([B, H, L, L], [t.strides[0], t.strides[1], t.strides[3], t.strides[2]]);
  const scale = 1 / Math.sqrt(D);
  const views: Tensor[] = [];
  const keepView = (t: Tensor) => (views.push(t), t);
  const qs = elementwise('mul', [keepView(heads(q)), scale]);
  const scores = matmulRaw(qs, keepView(transposed(k)));
  const masked = mask ? elementwise('add', [scores, mask]) : scores;
  const p = softmaxRaw(masked, false);
  const o = matmulRaw(p, keepView(heads(v)));
  const merged = contiguousCopy(keepView(o.view([B, L, H, D], [o.strides[0], o.strides[2], o.strides[1], o.strides[3]])));
  const gh = keepView(heads(g));
  const dv = matmulRaw(keepView(last2(p)), gh);
  const dp = matmulRaw(gh, keepView(transposed(v)));
  const ds = softmaxBackwardRaw(p, dp, false);
  const dqHeads = matmulRaw(ds, keepView(heads(k)));
  const dq = elementwise('mul', [keepView(dqHeads.view([B, L, H, D], [dqHeads.strides[0], dqHeads.strides[2], dqHeads.strides[1], dqHeads.strides[3]])), scale]);
  const dk = matmulRaw(keepView(last2(ds)), qs);
  for (const t of [...views, qs, scores, masked, p, o, merged, dv, dp, ds, dqHeads, dk]) t.dispose();
  return dq;
}

/** Makes the engine use `tuning`'s choices (ignored, with null returned, when it was measured on another adapter). */
export function applyTuning(tuning: Tuning, adapter: string): Tuning | null {
  if (tuning.adapter !== adapter) return null;
  setMatmulTuning(Object.fromEntries(Object.entries(tuning.matmul).map(([bucket, t]) => [bucket, t.choice])));
  setRowTuning(Object.fromEntries(Object.entries(tuning.rows ?? {}).map(([kernel, t]) => [kernel, t.choice])));
  setAttentionTuning(Object.fromEntries(Object.entries(tuning.attention ?? {}).map(([kind, t]) => [kind, t.fused])));
  return tuning;
}
