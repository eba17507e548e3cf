// Benchmark plumbing: the tfjs-webgpu peer and result records for the table and --json output, beside the
// timing and validation of bench/timing.ts (re-exported here for the benchmarks).
import * as T from '../ops/index.ts';
import { median, timeOurs, type TimeOptions } from './timing.ts';

export { timeOurs, timeOursInterleaved, validate, type TimeOptions } from './timing.ts';

export interface Result {
  kernel: string;
  shape: string;
  impl: string;
  /** Wall-clock milliseconds per launch, submit to completion (what the peer is measured with too). */
  ms: number;
  /** GPU time per launch from timestamp queries, where the adapter has them. */
  gpuMs: number | null;
  /** GFLOP/s, GB/s or images/s from the wall-clock time, per `unit`. */
  rate: number;
  unit: 'GFLOP/s' | 'GB/s' | 'images/s';
  /** Ours against the peer measured interleaved (A B A B …): the median of the per-round speed ratios and their range. */
  vsPeer?: { median: number; lo: number; hi: number };
  /** What the host spends per step (bench/host.ts). */
  host?: HostCost;
  /** A long run's figures (bench/fullsize.ts). */
  run?: RunFigures;
}

/** A run of a few long steps (bench/fullsize.ts): each timed step, the first one, the memory, the loss. */
export interface RunFigures {
  /** Milliseconds of each timed step, in order (Result.ms is their median). */
  stepsMs: number[];
  /** The first step's milliseconds: pipelines compile (ours); PyTorch's allocator warms up (the median over its processes). */
  firstStepMs: number;
  /** The peak of live GPU bytes over the whole run, weights and optimizer state included (ours only). */
  peakBytes: number | null;
  /** The first and last training loss (ours, training runs). */
  loss?: [number, number];
  /** The one-line error of a run that failed (then stepsMs is empty and Result.ms is NaN). */
  error?: string;
}

/** The host's share of a step: commands issued and the JavaScript milliseconds it took to record them. */
export interface HostCost {
  dispatches: number;
  submits: number;
  /** JavaScript milliseconds from the call until the step returned, not counting GPU waits or queue submits. */
  recordMs: number;
  /** Milliseconds in queue.submit during the step (the driver's, blocking while its queue is busy). */
  submitMs: number;
  usPerDispatch: number;
  /** recordMs over the step's wall time (call to result read back). */
  share: number;
  /** The first step's wall time, compiling its pipelines (fresh ones only if no earlier suite compiled them). */
  firstStepMs?: number;
}

/** The vocabulary size of the CLIP benchmarks (a trained BPE's, as the trainer's default), not CLIP's 49,408. */
export const BENCH_VOCAB = 1000;

/**
 * A fixed batch of token ids [batch, contextLength]: varied ids up to the middle, the end-of-text token (the
 * largest id, where text features are pooled) there, padding after.
 */
export function tokenBatch(batch: number, contextLength: number, vocab = BENCH_VOCAB): T.Tensor {
  const L = contextLength;
  const ids = Int32Array.from({ length: batch * L }, (_, i) => (i % L === L >> 1 ? vocab - 1 : i % L > L >> 1 ? 0 : 1 + ((i * 7919) % (vocab - 2))));
  return T.Tensor.from(ids, [batch, L], 'i32');
}

// ---- tfjs-webgpu, the peer -----------------------------------------------------------------------------------
export type Tf = typeof import('@tensorflow/tfjs-core');
let tfPromise: Promise<Tf | null> | null = null;

/** tfjs with its WebGPU backend on the same `webgpu` instance, or null when it cannot start. */
export function loadTfjs(): Promise<Tf | null> {
  tfPromise ??= (async () => {
    try {
      (globalThis as { navigator?: unknown }).navigator = { gpu: T.gpu().instance, userAgent: 'node' };
      const tf = await import('@tensorflow/tfjs-core');
      await import('@tensorflow/tfjs-backend-webgpu');
      if (!(await tf.setBackend('webgpu'))) return null;
      await tf.ready();
      return tf;
    } catch (e) {
      console.error(`tfjs-webgpu unavailable: ${(e as Error).message}`);
      return null;
    }
  })();
  return tfPromise;
}

/** Median milliseconds per launch of a tfjs op, synchronised by reading back one element. */
export async function timeTfjs(
  tf: Tf,
  op: () => import('@tensorflow/tfjs-core').Tensor,
  { inner = 5, reps = 5, warmup = 2 }: TimeOptions = {},
): Promise<number> {
  const sync = async (t: import('@tensorflow/tfjs-core').Tensor) => {
    const one = tf.slice(t, new Array(t.rank).fill(0), new Array(t.rank).fill(1));
    await one.data();
    one.dispose();
  };
  const launch = async () => {
    let last: import('@tensorflow/tfjs-core').Tensor | null = null;
    for (let i = 0; i < inner; i++) {
      last?.dispose();
      last = op();
    }
    await sync(last!);
    last!.dispose();
  };
  for (let i = 0; i < warmup; i++) await launch();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await launch();
    times.push((performance.now() - t0) / inner);
  }
  return median(times);
}

/**
 * Ours and the peer timed in alternating rounds (A B A B …, so a slow moment of a shared machine hits both):
 * each side's median milliseconds per launch, and the median, lowest and highest of the per-round ratios
 * peer ms / our ms (how many times faster ours is).
 */
export async function timeAgainstPeer(
  ours: () => T.Tensor,
  tf: Tf,
  peer: () => import('@tensorflow/tfjs-core').Tensor,
  { inner = 5, reps = 7 }: TimeOptions = {},
): Promise<{ ms: number; gpuMs: number | null; peerMs: number; vsPeer: { median: number; lo: number; hi: number } }> {
  await timeOurs(ours, { inner, reps: 1, warmup: 1 });
  await timeTfjs(tf, peer, { inner, reps: 1, warmup: 1 });
  const [mine, theirs, gpu] = [[] as number[], [] as number[], [] as number[]];
  for (let r = 0; r < reps; r++) {
    const a = await timeOurs(ours, { inner, reps: 1, warmup: 0 });
    mine.push(a.ms);
    if (a.gpuMs !== null) gpu.push(a.gpuMs);
    theirs.push(await timeTfjs(tf, peer, { inner, reps: 1, warmup: 0 }));
  }
  const ratios = mine.map((m, i) => theirs[i] / m).sort((x, y) => x - y);
  return {
    ms: median(mine),
    gpuMs: gpu.length === reps ? median(gpu) : null,
    peerMs: median(theirs),
    vsPeer: { median: median(ratios), lo: ratios[0], hi: ratios[reps - 1] },
  };
}
