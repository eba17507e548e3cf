// Kernel selection by measurement, per adapter: kernels/policy.ts reads the table this file produces.
//
// Matmul: every variant the device can run is timed on one shape per bucket (small / medium / large M, N, K in
// each operand layout a layer uses) and on the exact shapes in TUNED_SHAPES (ViT-B/32's products and square
// sizes, which the bench reports); softmax and layer norm: each way of walking a wide row; attention with
// 64-wide heads, causal and not: the fused kernels against batched matmuls around the softmax, forward +
// backward. Candidates are timed in interleaved rounds (A B C A B C …, so a slow moment of a shared machine hits
// them all), GPU timestamps where the adapter has them, else the wall clock. A candidate replaces the default
// only when it wins by more than the measured spread: the median of its per-round speed-ups over the default
// must exceed 1 by more than their half interquartile range (and by 3% at least), and its median time must be 3%
// lower. Every candidate's median and
// interquartile range are kept in the table, so a reader can see how close a choice was. Tuning takes a minute on
// lavapipe; kernels/io/tuning.ts caches the table per adapter and driver in Node, a page keeps it in memory.
import { getEngine } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { randNormal } from './creation.ts';
import { attentionBackward, attentionForward, attentionLanes } from './attention.ts';
import { contiguousCopy, elementwise } from './elementwise.ts';
import { layerNormRaw } from './layernorm.ts';
import { MATMUL_VARIANTS, matmulRaw } from './matmul.ts';
import {
  ROW_PATH_DEFAULT, TUNED_LAYOUTS, WIDE_FUSED_DEFAULT, defaultMatmulConfig, matmulBucket, matmulShapeKey, matmulUnsupported, useTuningTable, variantName,
  type AttentionKind, type MatmulLayout, type RowKernel, type RowPath, type Timing, type Tuning,
} from './policy.ts';
import { rowLanes } from './rows.ts';
import { softmaxBackwardRaw, softmaxRaw } from './softmax.ts';

export type { Tuning } from './policy.ts';

/** A shape of each size class, what the tuner times for a bucket. */
export const BUCKET_SIZES: Record<string, number> = { s: 64, m: 256, l: 512 };

/** Exact [M, N, K] products tuned on their own (and reported by `npm run bench`): ViT-B/32 at batch 8 and squares. */
export const TUNED_SHAPES: [number, number, number, MatmulLayout][] = [
  [400, 2304, 768, 'nn'],
  [400, 3072, 768, 'nn'],
  [400, 768, 3072, 'nn'],
  [256, 256, 256, 'nn'],
  [512, 512, 512, 'nn'],
  [1024, 1024, 1024, 'nn'],
];

/** Rounds of interleaved timing per candidate. */
const ROUNDS = 5;

/**
 * Milliseconds of one `run` (one dispatch) per candidate and round: `reps` rounds that interleave the candidates;
 * each sample times `inner` back-to-back dispatches, enough work that timer resolution and launch noise do not
 * decide.
 */
async function timeInterleaved(runs: (() => Tensor)[], inner: number, reps = ROUNDS): Promise<number[][]> {
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
  return samples;
}

/** The q-quantile of `xs` (linear between order statistics). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

/** Median and interquartile range of a candidate's samples. */
export const timingOf = (ms: number[]): Timing => ({ ms: quantile(ms, 0.5), q25: quantile(ms, 0.25), q75: quantile(ms, 0.75) });

/**
 * Whether `candidate` beats `baseline` by more than the spread: per round, the speed-up baseline / candidate
 * (paired: both were timed in the same round); the median speed-up must exceed 1 by more than half their
 * interquartile range, and by 3% at least.
 */
export function winsClearly(candidate: number[], baseline: number[]): boolean {
  const ratios = candidate.map((ms, i) => baseline[i] / ms);
  const spread = (quantile(ratios, 0.75) - quantile(ratios, 0.25)) / 2;
  return quantile(ratios, 0.5) - 1 > Math.max(spread, 0.03);
}

/**
 * The candidates' timings and the choice: the fastest by median, when it wins clearly over the default (index 0)
 * and its median is at least 3% faster, else the default.
 */
function decide(samples: number[][]): { timings: Timing[]; choice: number } {
  const timings = samples.map(timingOf);
  const best = timings.reduce((b, t, i) => (t.ms < timings[b].ms ? i : b), 0);
  // Both ways of asking agree before the default is replaced: the paired per-round speed-ups beat their spread,
  // and the medians themselves are 3% apart (what the table records).
  const clear = best !== 0 && winsClearly(samples[best], samples[0]) && timings[best].ms * 1.03 < timings[0].ms;
  return { timings, choice: clear ? best : 0 };
}

/**
 * Times every runnable matmul variant (the naive v1 excluded) in every bucket, for each layout a layer's
 * products take (forward x·Wᵀ, input gradient g·W, weight gradient xᵀ·g: the loads a variant can vectorise
 * differ), and on each of `shapes`; `log` hears each choice.
 */
export async function tuneMatmul(adapter: string, log: (line: string) => void = () => {}, shapes = TUNED_SHAPES): Promise<Tuning> {
  const fixed = defaultMatmulConfig();
  // The default first: it is the baseline every other candidate must beat clearly.
  const candidates = [fixed, ...MATMUL_VARIANTS.filter((c) => c.version !== 'v1' && matmulUnsupported(c) === null && variantName(c) !== variantName(fixed))];
  const result: Tuning = { adapter, matmul: {} };
  const classes = Object.keys(BUCKET_SIZES);
  const problems: { key: string; M: number; N: number; K: number; layout: MatmulLayout }[] = [];
  for (const layout of TUNED_LAYOUTS) for (const m of classes) for (const n of classes) for (const k of classes) {
    const [M, N, K] = [BUCKET_SIZES[m], BUCKET_SIZES[n], BUCKET_SIZES[k]];
    problems.push({ key: matmulBucket(M, N, K, layout), M, N, K, layout });
  }
  for (const [M, N, K, layout] of shapes) problems.push({ key: matmulShapeKey(M, N, K, layout), M, N, K, layout });
  for (const { key, M, N, K, layout } of problems) {
    const a = operand(M, K, layout[0] === 't');
    const b = operand(K, N, layout[1] === 't');
    const flops = 2 * M * N * K;
    const inner = Math.min(64, Math.max(1, Math.ceil(2e7 / flops)));
    const { timings, choice } = decide(await timeInterleaved(candidates.map((config) => () => matmulRaw(a, b, {}, config)), inner));
    a.dispose();
    b.dispose();
    const rates = candidates.map((config, i) => ({ config, gflops: flops / timings[i].ms / 1e6, timing: timings[i] }));
    result.matmul[key] = { choice: candidates[choice], rates: [...rates].sort((x, y) => y.gflops - x.gflops) };
    const best = result.matmul[key].rates[0];
    log(
      `matmul ${key} [${M}×${K}]·[${K}×${N}]: ${variantName(candidates[choice])} ` +
        `(best ${variantName(best.config)} ${best.gflops.toFixed(1)} GFLOP/s, default ${variantName(fixed)} ${rates[0].gflops.toFixed(1)})`,
    );
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
  for (const [kernel, others, run] of kernels) {
    const paths = [ROW_PATH_DEFAULT[kernel], ...others.filter((p) => p !== ROW_PATH_DEFAULT[kernel])];
    const { timings, choice } = decide(await timeInterleaved(paths.map((path) => () => run(path)), 1));
    const rates = paths.map((path, i) => ({ path, gbps: (2 * rows * D * 4) / timings[i].ms / 1e6, timing: timings[i] }));
    result[kernel] = { choice: paths[choice], rates };
    log(`${kernel} [${rows}×${D}]: ${paths[choice]} per row (${rates.map((r) => `${r.path} ${r.gbps.toFixed(2)} GB/s`).join(', ')}; default ${paths[0]})`);
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
    // The default first: the other path must beat it clearly.
    const order = WIDE_FUSED_DEFAULT[kind] ? [true, false] : [false, true];
    const { timings, choice } = decide(await timeInterleaved(order.map((isFused) => (isFused ? fused : unfused)), 1));
    const flops = (causal ? 0.5 : 1) * 4 * B * H * L * L * D * 3; // forward 2 products, backward 4
    const rates = order.map((isFused, i) => ({ fused: isFused, gflops: flops / timings[i].ms / 1e6, timing: timings[i] }));
    result[kind] = { fused: order[choice], rates };
    const named = (isFused: boolean) => (isFused ? 'fused' : 'matmuls');
    const listed = rates.map((r) => `${named(r.fused)} ${r.gflops.toFixed(2)}`).join(', ');
    log(`attention ${kind} [${B}, ${L}, ${H} × ${D}] fwd+bwd: ${order[choice] ? 'fused' : 'batched matmuls'} (${listed} GFLOP/s; default ${named(order[0])})`);
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
  const dq = elementwise('mul', [
    keepView(dqHeads.view([B, L, H, D], [dqHeads.strides[0], dqHeads.strides[2], dqHeads.strides[1], dqHeads.strides[3]])),
    scale,
  ]);
  const dk = matmulRaw(keepView(last2(ds)), qs);
  for (const t of [...views, qs, scores, masked, p, o, merged, dv, dp, ds, dqHeads, dk]) t.dispose();
  return dq;
}

/** Makes the engine use `tuning`'s choices (ignored, with null returned, when it was measured on another adapter). */
export const applyTuning = (tuning: Tuning, adapter: string): Tuning | null => useTuningTable(tuning, adapter);
