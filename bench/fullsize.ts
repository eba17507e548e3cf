// Full size: CLIP ViT-B/32 with its published towers (the vocabulary reduced to 1,000, BENCH_VOCAB, as in the
// train-step suite) next to the same architecture in PyTorch on the CPU (bench/torch_clip_step.py, 2 threads).
// Opt-in (`clipgpu bench --only full-size`): on a CPU adapter one step takes minutes. Reported:
// - training images/s at batch 8 and 32 in fp32, our step captured and replayed (the trainer's default);
// - inference (encode_image alone) images/s at batch 1 and 32, ours eager and replayed, PyTorch under no_grad;
// - the peak of live GPU bytes of each of our runs, weights and optimizer state included (T.memory().peakBytes
//   from T.resetPeakMemory() before the model is built);
// - gradient checkpointing at batch 32 (peak bytes and step time beside the run without it), then whether batch
//   128 fits with it: two eager steps (the second holds Adam's moments beside its activations, as every later
//   step does; a first step creates them only after its activations are freed), whose error, if any, is reported
//   as the run's result rather than thrown.
// Validated as it runs: a training run's first loss is finite and near ln(batch) (random features), every later
// loss finite, and checkpointing leaves the first loss unchanged; replayed image features equal eager ones.
// Each timed round is one step of ours, then one PyTorch process timing its steps after an untimed first one
// (A B A B: a busy moment of a shared machine hits both); rows give medians, each step's time, the first step's
// (pipelines compiling) and the per-round speed ratios.
import { loadavg } from 'node:os';
import { CONFIGS, type ClipConfig } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { BENCH_VOCAB, tokenBatch, type Result } from './harness.ts';
import { runTorch, type TorchOptions, type TorchRun } from './torch.ts';

/** What the suite runs; the defaults are the full-size figures, a test passes a tiny model and batches. */
export interface FullSizeOptions {
  /** A name in CONFIGS (default ViT-B/32); its vocabulary is replaced by BENCH_VOCAB. */
  model?: string;
  /** Training batches, fp32, replayed (default 8 and 32). */
  trainBatches?: number[];
  /** encode_image batches (default 1 and 32). */
  inferBatches?: number[];
  /** The batch trained again with gradient checkpointing (default 32); null skips it. */
  checkpointingBatch?: number | null;
  /** A batch tried for two eager steps with gradient checkpointing, to see whether it fits (default 128); null skips it. */
  fitBatch?: number | null;
  /** Timed rounds per run, at least 1 (default 2). */
  rounds?: number;
  /** Time PyTorch beside ours (when python3 with torch is installed). */
  peer: boolean;
  /** Progress, one line per step. */
  log: (line: string) => void;
}

/** The median, the mean of the middle two of an even count (timing.ts's upper one would report the better of two rounds). */
function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The machine's 1-minute load average, for progress lines (a shared machine's other work shows there). */
const load = () => `load ${loadavg()[0].toFixed(1)}`;

/** One of our runs: its name and the step it times (resolving to the step's milliseconds). */
interface OursRun {
  impl: string;
  step: () => Promise<number>;
}

/**
 * `rounds` rounds of one step of each of `ours`, then one PyTorch run (null: none): the milliseconds of every
 * step of ours per run, and the PyTorch runs.
 */
async function alternate(
  what: string,
  rounds: number,
  ours: OursRun[],
  torch: (() => TorchRun | null) | null,
  log: (line: string) => void,
): Promise<{ oursMs: number[][]; torchRuns: TorchRun[] }> {
  const oursMs = ours.map(() => [] as number[]);
  const torchRuns: TorchRun[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const [i, run] of ours.entries()) {
      oursMs[i].push(await run.step());
      log(`  ${what}, round ${r + 1}: ${run.impl} ${(oursMs[i][r] / 1000).toFixed(2)} s (${load()})`);
    }
    const peer = torch?.();
    if (peer) {
      torchRuns.push(peer);
      log(`  ${what}, round ${r + 1}: ${peer.impl} ${(peer.ms_per_step / 1000).toFixed(2)} s (${load()})`);
    }
  }
  return { oursMs, torchRuns };
}

/** Result rows for one case: each of our runs (with its ratio to PyTorch per round) and PyTorch's. */
function caseRows(
  kernel: string,
  shape: string,
  batch: number,
  ours: { impl: string; stepsMs: number[]; firstStepMs: number; peakBytes: number; loss?: [number, number] }[],
  torchRuns: TorchRun[],
): Result[] {
  const rate = (ms: number) => (1000 * batch) / ms;
  const rows: Result[] = ours.map(({ impl, ...run }) => {
    const ms = median(run.stepsMs);
    const row: Result = { kernel, shape, impl, ms, gpuMs: null, rate: rate(ms), unit: 'images/s', run };
    if (torchRuns.length === run.stepsMs.length && torchRuns.length > 0) {
      const ratios = run.stepsMs.map((m, i) => torchRuns[i].ms_per_step / m).sort((a, b) => a - b);
      row.vsPeer = { median: median(ratios), lo: ratios[0], hi: ratios[ratios.length - 1] };
    }
    return row;
  });
  if (torchRuns.length) {
    const stepsMs = torchRuns.map((t) => t.ms_per_step);
    const ms = median(stepsMs);
    const firstStepMs = median(torchRuns.map((t) => t.first_step_ms));
    rows.push({ kernel, shape, impl: torchRuns[0].impl, ms, gpuMs: null, rate: rate(ms), unit: 'images/s', run: { stepsMs, firstStepMs, peakBytes: null } });
  }
  return rows;
}

/** The PyTorch runs for a case: at least 8 images' worth of timed steps each, after the untimed first step. */
const torchFor = (config: ClipConfig, batch: number, mode: TorchOptions['mode'], peer: boolean) =>
  peer ? () => runTorch(config, BENCH_VOCAB, batch, { mode, steps: Math.ceil(8 / batch), warmup: 0 }) : null;

/** Frees what earlier runs pooled and restarts the peak, so a run's peak counts its own model and state. */
async function freshPeak(): Promise<void> {
  await T.releasePooled();
  T.resetPeakMemory();
}

/**
 * Training at `batch`, fp32, on a fixed random batch: replayed from a captured step (a warm-up and two
 * recordings first) or eagerly (`replay` false, after a first step), against PyTorch over `rounds` rounds. The
 * first loss must be finite and near ln(batch), and equal `firstLoss` when given.
 */
async function trainRun(
  name: string,
  config: ClipConfig,
  batch: number,
  { checkpointing, replay, rounds, peer, log, firstLoss }: { checkpointing: boolean; replay: boolean; rounds: number; peer: boolean; log: FullSizeOptions['log']; firstLoss?: number },
): Promise<Result[]> {
  const kernel = `${name} train step`;
  const shape = `batch ${batch}, fp32${checkpointing ? ', checkpointing' : ''}`;
  const impl = replay ? 'ours, replayed' : 'ours, eager';
  await freshPeak();
  T.manualSeed(0);
  const model = new CLIP(config);
  model.gradientCheckpointing = checkpointing;
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
  const n = config.imageResolution;
  const images = T.keep(T.randNormal([batch, 3, n, n]));
  const tokens = T.keep(tokenBatch(batch, config.contextLength));
  const captured = replay ? new T.CapturedStep((x: T.Tensor, t: T.Tensor) => trainStep(model, optimizer, x, t), 'train step') : null;
  const losses: number[] = [];
  const step = async () => {
    const t0 = performance.now();
    const out = captured ? captured.run(images, tokens) : trainStep(model, optimizer, images, tokens);
    const loss = await out.item();
    out.dispose();
    const ms = performance.now() - t0;
    if (!Number.isFinite(loss)) throw new Error(`${kernel}, ${shape}: step ${losses.length + 1} gave loss ${loss}`);
    losses.push(loss);
    return ms;
  };
  try {
    const firstStepMs = await step();
    log(`  ${kernel}, ${shape}: first step ${(firstStepMs / 1000).toFixed(1)} s, loss ${losses[0].toFixed(4)} (${load()})`);
    if (Math.abs(losses[0] - Math.log(batch)) > 1.5 || (firstLoss !== undefined && losses[0] !== firstLoss)) {
      const expected = `≈ ln ${batch} = ${Math.log(batch).toFixed(2)}${firstLoss !== undefined ? `, equal to ${firstLoss} without checkpointing` : ''}`;
      throw new Error(`${kernel}, ${shape}: first loss ${losses[0]} (expected ${expected})`);
    }
    if (captured) {
      for (let i = 0; i < 2; i++) log(`  ${kernel}, ${shape}: recording ${i + 1}, ${((await step()) / 1000).toFixed(1)} s`);
      if (!captured.ready || captured.refusal) throw new Error(`${kernel}, ${shape}: the step was not replayed (${captured.refusal ?? 'not ready'})`);
    }
    const what = `${kernel}, ${shape}`;
    const { oursMs, torchRuns } = await alternate(what, rounds, [{ impl, step }], torchFor(config, batch, 'train', peer), log);
    const ours = { impl, stepsMs: oursMs[0], firstStepMs, peakBytes: T.memory().peakBytes, loss: [losses[0], losses[losses.length - 1]] as [number, number] };
    return caseRows(kernel, shape, batch, [ours], torchRuns);
  } finally {
    captured?.dispose();
    for (const x of [model, optimizer, images, tokens]) x.dispose();
  }
}

/** encode_image at `batch`: ours eager and replayed (checked equal) against PyTorch under no_grad over `rounds` rounds. */
async function inferRun(name: string, config: ClipConfig, batch: number, rounds: number, peer: boolean, log: FullSizeOptions['log']): Promise<Result[]> {
  const kernel = `${name} encode_image`;
  const shape = `batch ${batch}, fp32`;
  await freshPeak();
  T.manualSeed(0);
  const model = new CLIP(config).eval();
  const n = config.imageResolution;
  const images = T.keep(T.randNormal([batch, 3, n, n]));
  const encode = (x: T.Tensor) => T.noGrad(() => T.tidy(() => model.encodeImage(x)));
  const captured = new T.CapturedStep(encode, 'encode_image');
  let eagerFeatures: Float32Array | null = null;
  let replayedFeatures: Float32Array | null = null;
  const timed = (run: () => T.Tensor, store: (features: Float32Array) => void) => async () => {
    const t0 = performance.now();
    const out = run();
    const features = (await out.data()) as Float32Array;
    out.dispose();
    store(features);
    return performance.now() - t0;
  };
  const eager = timed(() => encode(images), (f) => (eagerFeatures = f));
  const replayed = timed(() => captured.run(images), (f) => (replayedFeatures = f));
  try {
    const firstStepMs = await eager();
    log(`  ${kernel}, ${shape}: first step ${(firstStepMs / 1000).toFixed(1)} s (${load()})`);
    for (let i = 0; i < 3; i++) await replayed(); // a warm-up run and two recordings
    if (!captured.ready || captured.refusal) throw new Error(`${kernel}, ${shape}: not replayed (${captured.refusal ?? 'not ready'})`);
    const { oursMs, torchRuns } = await alternate(
      `${kernel}, ${shape}`,
      rounds,
      [{ impl: 'ours, eager', step: eager }, { impl: 'ours, replayed', step: replayed }],
      torchFor(config, batch, 'infer', peer),
      log,
    );
    const [e, r] = [eagerFeatures! as Float32Array, replayedFeatures! as Float32Array];
    if (e.length !== batch * config.embedDim || !e.every(Number.isFinite) || e.some((v, i) => v !== r[i])) {
      throw new Error(`${kernel}, ${shape}: image features not finite, of the wrong size, or replayed unlike eager`);
    }
    const peakBytes = T.memory().peakBytes;
    return caseRows(kernel, shape, batch, [
      { impl: 'ours, eager', stepsMs: oursMs[0], firstStepMs, peakBytes },
      { impl: 'ours, replayed', stepsMs: oursMs[1], firstStepMs, peakBytes },
    ], torchRuns);
  } finally {
    captured.dispose();
    model.dispose();
    images.dispose();
  }
}

/** The full-size suite: see the file comment. */
export async function benchFullSize({
  model = 'ViT-B/32',
  trainBatches = [8, 32],
  inferBatches = [1, 32],
  checkpointingBatch = 32,
  fitBatch = 128,
  rounds = 2,
  peer,
  log,
}: FullSizeOptions): Promise<Result[]> {
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`full-size bench: rounds must be a positive integer, got ${rounds}`);
  const config = { ...CONFIGS[model], vocabSize: BENCH_VOCAB };
  const results: Result[] = [];
  const report = (rows: Result[]) => {
    for (const r of rows) log(`${r.kernel}, ${r.shape}, ${r.impl}: ${r.rate.toFixed(3)} images/s, peak ${r.run?.peakBytes ?? '—'} bytes`);
    results.push(...rows);
  };
  for (const batch of trainBatches) report(await trainRun(model, config, batch, { checkpointing: false, replay: true, rounds, peer, log }));
  for (const batch of inferBatches) report(await inferRun(model, config, batch, rounds, peer, log));
  if (checkpointingBatch !== null) {
    const without = results.find((r) => r.kernel === `${model} train step` && r.shape === `batch ${checkpointingBatch}, fp32` && r.run?.loss);
    const firstLoss = without?.run?.loss?.[0];
    report(await trainRun(model, config, checkpointingBatch, { checkpointing: true, replay: true, rounds, peer, log, firstLoss }));
  }
  if (fitBatch !== null) {
    try {
      report(await trainRun(model, config, fitBatch, { checkpointing: true, replay: false, rounds: 1, peer: false, log }));
    } catch (e) {
      const error = (e as Error).message.split('\n')[0];
      log(`  ${model} train step, batch ${fitBatch}, checkpointing: failed: ${error}`);
      const run = { stepsMs: [], firstStepMs: NaN, peakBytes: T.memory().peakBytes, error };
      results.push({ kernel: `${model} train step`, shape: `batch ${fitBatch}, fp32, checkpointing`, impl: 'ours, eager', ms: NaN, gpuMs: null, rate: NaN, unit: 'images/s', run });
    }
  }
  return results;
}
