// Host overhead: what the JavaScript costs per step, before the GPU is awaited. On lavapipe the kernels are slow
// enough to hide it; on the GPUs people train on, a step of thousands of small dispatches is bound by it. For
// a CLIP training step (ViT-scenes at batch 64, ViT-B/32 at batch 8; fp32 and amp) and a zero-shot forward of
// ViT-B/32 at batch 1 (the latency a demo user feels): dispatches and submits per step, milliseconds of
// JavaScript to record one step, µs per dispatch, and that time's share of the step's wall time — eager, and
// replayed from a captured step (core/capture.ts) where the step can be captured (amp reads a finiteness flag
// back every step, so it stays eager). Medians over the timed steps; each step's loss is validated finite.
import { CONFIGS, type ClipConfig } from '../clip/config.ts';
import { CLIP, l2normalize } from '../clip/model.ts';
import { trainStep, trainStepAmp } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { median } from './timing.ts';
import type { HostCost, Result } from './harness.ts';

const VOCAB = 1000;

/**
 * One measured step: JavaScript milliseconds before the GPU is awaited (queue submits not counted: on a busy
 * queue the driver blocks there), submit milliseconds, wall milliseconds, commands issued.
 */
interface Sample {
  recordMs: number;
  submitMs: number;
  wallMs: number;
  dispatches: number;
  submits: number;
}

/** Runs `step` (which returns the tensor to await) and measures it. */
async function measure(step: () => T.Tensor | Promise<T.Tensor>): Promise<Sample> {
  const before = T.memory();
  const t0 = performance.now();
  const pending = step();
  const out = await pending;
  const t1 = performance.now();
  const during = T.memory();
  const waitedInStep = during.waitMs - before.waitMs; // an amp step reads a flag back inside the step
  const submitMs = during.submitMs - before.submitMs;
  const value = await out.item();
  const t2 = performance.now();
  out.dispose();
  if (!Number.isFinite(value)) throw new Error(`host-overhead bench: a step returned ${value}`);
  const after = T.memory();
  return {
    recordMs: t1 - t0 - waitedInStep - submitMs,
    submitMs,
    wallMs: t2 - t0,
    dispatches: after.dispatches - before.dispatches,
    submits: after.submits - before.submits,
  };
}

/** The medians of `samples` as a result row. */
function row(shape: string, impl: string, samples: Sample[], batch: number, extra: Partial<HostCost> = {}): Result {
  const recordMs = median(samples.map((s) => s.recordMs));
  const wallMs = median(samples.map((s) => s.wallMs));
  const dispatches = median(samples.map((s) => s.dispatches));
  const host: HostCost = {
    dispatches,
    submits: median(samples.map((s) => s.submits)),
    recordMs,
    submitMs: median(samples.map((s) => s.submitMs)),
    usPerDispatch: (1000 * recordMs) / Math.max(1, dispatches),
    share: recordMs / wallMs,
    ...extra,
  };
  return { kernel: 'host overhead', shape, impl, ms: wallMs, gpuMs: null, rate: (1000 * batch) / wallMs, unit: 'images/s', host };
}

function tokensFor(batch: number, L: number): T.Tensor {
  const ids = Int32Array.from({ length: batch * L }, (_, i) => (i % L === L >> 1 ? VOCAB - 1 : i % L > L >> 1 ? 0 : 1 + ((i * 7919) % (VOCAB - 2))));
  return T.Tensor.from(ids, [batch, L], 'i32');
}

/** Training steps of `config` at `batch`: eager fp32, replayed fp32, and eager amp where the device has shader-f16. */
async function trainRows(name: string, config: ClipConfig, batch: number, steps: number): Promise<Result[]> {
  const shape = `${name} train step, batch ${batch}`;
  const results: Result[] = [];
  const setup = () => {
    T.manualSeed(0);
    const model = new CLIP({ ...config, vocabSize: VOCAB });
    const optimizer = new AdamW(model.parameters(), { lr: 1e-4, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
    const images = T.keep(T.randNormal([batch, 3, config.imageResolution, config.imageResolution]));
    const tokens = T.keep(tokensFor(batch, config.contextLength));
    const dispose = () => [model, optimizer, images, tokens].forEach((x) => x.dispose());
    return { model, optimizer, images, tokens, dispose };
  };
  {
    const { model, optimizer, images, tokens, dispose } = setup();
    const began = performance.now();
    await measure(() => trainStep(model, optimizer, images, tokens));
    const firstStepMs = performance.now() - began;
    const eager: Sample[] = [];
    for (let i = 0; i < steps; i++) eager.push(await measure(() => trainStep(model, optimizer, images, tokens)));
    results.push(row(shape, 'ours, eager fp32', eager, batch, { firstStepMs }));
    const captured = new T.CapturedStep((x: T.Tensor, t: T.Tensor) => trainStep(model, optimizer, x, t), 'train step');
    for (let i = 0; i < 2; i++) await measure(() => captured.run(images, tokens)); // recorded twice (warm-up was the eager steps)
    const replayed: Sample[] = [];
    for (let i = 0; i < steps; i++) replayed.push(await measure(() => captured.run(images, tokens)));
    if (!captured.ready || captured.refusal) throw new Error(`host-overhead bench: the train step was not replayed (${captured.refusal ?? 'not ready'})`);
    results.push(row(shape, 'ours, replayed fp32', replayed, batch));
    captured.dispose();
    dispose();
  }
  if (T.gpu().hasFeature('shader-f16')) {
    const { model, optimizer, images, tokens, dispose } = setup();
    const scaler = new GradScaler();
    const step = async () => (await trainStepAmp(model, optimizer, scaler, images, tokens)).loss;
    await measure(step);
    const amp: Sample[] = [];
    for (let i = 0; i < steps; i++) amp.push(await measure(step));
    results.push(row(shape, 'ours, eager amp', amp, batch));
    dispose();
  }
  return results;
}

/**
 * A forward-only step `f(x)` measured eagerly and replayed (a warm-up and two recordings first): two result rows
 * for `shape`, `batch` images per step.
 */
async function eagerAndReplayed(shape: string, f: (x: T.Tensor) => T.Tensor, x: T.Tensor, steps: number, batch: number): Promise<Result[]> {
  const eager: Sample[] = [];
  await measure(() => f(x));
  for (let i = 0; i < steps; i++) eager.push(await measure(() => f(x)));
  const captured = new T.CapturedStep(f, shape);
  for (let i = 0; i < 3; i++) await measure(() => captured.run(x));
  const replayed: Sample[] = [];
  for (let i = 0; i < steps; i++) replayed.push(await measure(() => captured.run(x)));
  if (!captured.ready || captured.refusal) throw new Error(`host-overhead bench: ${shape} was not replayed (${captured.refusal ?? 'not ready'})`);
  captured.dispose();
  return [row(shape, 'ours, eager', eager, batch), row(shape, 'ours, replayed', replayed, batch)];
}

/** Zero-shot classification of one image by ViT-B/32 against ten precomputed class embeddings: eager and replayed. */
async function zeroShotRows(steps: number): Promise<Result[]> {
  T.manualSeed(0);
  const config = { ...CONFIGS['ViT-B/32'], vocabSize: VOCAB };
  const model = new CLIP(config);
  const classes = T.keep(T.noGrad(() => l2normalize(model.encodeText(tokensFor(10, config.contextLength)))));
  const image = T.keep(T.randNormal([1, 3, config.imageResolution, config.imageResolution]));
  const top = (x: T.Tensor) =>
    T.noGrad(() => T.tidy(() => T.max(T.softmax(T.mul(T.matmul(l2normalize(model.encodeImage(x)), T.transpose(classes)), 100), -1))));
  const results = await eagerAndReplayed('ViT-B/32 zero-shot forward, batch 1', top, image, steps, 1);
  for (const t of [model, classes, image]) t.dispose();
  return results;
}

/**
 * The host cost alone: a chain of 512 elementwise ops on 4 floats (the GPU's share is negligible), eager and
 * replayed — µs per dispatch of the library's JavaScript, then of the replay's encoder calls and submits.
 */
async function tinyChainRows(steps: number): Promise<Result[]> {
  const x = T.keep(T.randNormal([4]));
  const chain = (t: T.Tensor) =>
    T.tidy(() => {
      let y = t;
      for (let i = 0; i < 512; i++) y = T.mul(T.add(y, 0.001), 0.999);
      return T.sum(y);
    });
  const results = await eagerAndReplayed('1,024 elementwise ops on [4] + a sum', chain, x, steps, 1);
  x.dispose();
  return results;
}

export async function benchHost({ quick }: { quick: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  results.push(...(await tinyChainRows(5)));
  results.push(...(await trainRows('ViT-scenes', CONFIGS['ViT-scenes'], 64, quick ? 3 : 5)));
  if (!quick) results.push(...(await trainRows('ViT-B/32', CONFIGS['ViT-B/32'], 8, 3)));
  results.push(...(await zeroShotRows(quick ? 3 : 5)));
  return results;
}
