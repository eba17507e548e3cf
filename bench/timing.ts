// Timing and validation, what every benchmark here and the package's `clipgpu/bench` use: validate against a
// reference first, then time (median wall clock per launch; GPU time from timestamp queries where the adapter
// has them), several ops interleaved when they are compared. No peer library is involved (bench/harness.ts).
import * as T from '../ops/index.ts';
import { getEngine } from '../core/engine.ts';

/** How a measurement repeats (defaults: 5 launches per sample, 5 samples, 2 warm-up samples). */
export interface TimeOptions {
  /** Op launches per sample (amortises submit and wait). */
  inner?: number;
  /** Samples; the median is reported. */
  reps?: number;
  /** Samples run and discarded first (pipelines compile, pools fill). */
  warmup?: number;
}

/** The middle value (the upper one of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Median milliseconds per launch of `op` (which returns its output; outputs are disposed): wall clock around
 * submit + wait, and GPU time from timestamp queries when the adapter has them.
 */
export async function timeOurs(op: () => T.Tensor, { inner = 5, reps = 5, warmup = 2 }: TimeOptions = {}): Promise<{ ms: number; gpuMs: number | null }> {
  const engine = getEngine();
  const launch = () => {
    for (let i = 0; i < inner; i++) op().dispose();
  };
  for (let i = 0; i < warmup; i++) launch();
  await T.sync();
  const gpuTimes: number[] = [];
  const wallTimes: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const gpuMs = await engine.timeGpu(launch);
    await T.sync();
    wallTimes.push((performance.now() - t0) / inner);
    if (gpuMs !== null) gpuTimes.push(gpuMs / inner);
  }
  return { ms: median(wallTimes), gpuMs: gpuTimes.length === reps ? median(gpuTimes) : null };
}

/**
 * Times several ops of ours in interleaved rounds (A B C A B C …, one timeOurs sample each per round), so a slow
 * moment of a shared machine hits every one of them alike; the median per op.
 */
export async function timeOursInterleaved(ops: (() => T.Tensor)[], { inner = 5, reps = 5 }: TimeOptions = {}): Promise<{ ms: number; gpuMs: number | null }[]> {
  for (const op of ops) await timeOurs(op, { inner, reps: 1, warmup: 1 });
  const wall = ops.map(() => [] as number[]);
  const gpu = ops.map(() => [] as number[]);
  for (let r = 0; r < reps; r++) {
    for (const [i, op] of ops.entries()) {
      const t = await timeOurs(op, { inner, reps: 1, warmup: 0 });
      wall[i].push(t.ms);
      if (t.gpuMs !== null) gpu[i].push(t.gpuMs);
    }
  }
  return ops.map((_, i) => ({ ms: median(wall[i]), gpuMs: gpu[i].length === reps ? median(gpu[i]) : null }));
}

/** Throws when sampled outputs differ from their float64 reference values beyond the tolerance. */
export function validate(name: string, samples: { got: number; want: number }[], tol: number): void {
  let worst = 0;
  for (const { got, want } of samples) worst = Math.max(worst, Math.abs(got - want) / Math.max(1, Math.abs(want)));
  if (!(worst <= tol)) throw new Error(`${name}: output differs from the float64 reference by ${worst.toExponential(2)} (tolerance ${tol})`);
}
