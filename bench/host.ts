// Host overhead: what the JavaScript costs per step, before the GPU is awaited. On lavapipe the kernels are slow
// enough to hide it; on the GPUs people train on, a step of thousands of small dispatches is bound by it. For
// a CLIP training step (ViT-scenes at batch 64, ViT-B/32 at batch 8; fp32 and amp) and a zero-shot forward of
// ViT-B/32 at batch 1 (the latency a demo user feels): dispatches and submits per step, milliseconds of
// JavaScript to record one step, µs per dispatch, and that time's share of the step's wall time — eager, and
// replayed from a captured step (core/capture.ts; amp in two halves around its finiteness readback,
// CapturedAmpStep). Beside them, the floor: the WebGPU implementation's own cost per dispatch of the encoder
// calls alone. Medians over the timed steps; each step's loss is validated finite.
import { CONFIGS, type ClipConfig } from '../clip/config.ts';
import { CLIP, l2normalize } from '../clip/model.ts';
import { CapturedAmpStep, trainStep, trainStepAmp } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { getEngine } from '../core/engine.ts';
import { median } from './timing.ts';
import { BENCH_VOCAB as VOCAB, tokenBatch as tokensFor, type HostCost, type Result } from './harness.ts';

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

/** Training steps of `config` at `batch`: eager and replayed, in fp32 and (where the device has shader-f16) amp. */
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
    await captured.settled(); // the fixed-slot pipelines in: replays in their cheapest form
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
    const captured = new CapturedAmpStep(model, optimizer, scaler);
    for (let i = 0; i < 3; i++) await measure(async () => (await captured.run(images, tokens)).loss); // warm-up, two recordings
    await captured.settled();
    const replayed: Sample[] = [];
    for (let i = 0; i < steps; i++) replayed.push(await measure(async () => (await captured.run(images, tokens)).loss));
    if (captured.refusal || captured.replays.gradients < steps) {
      throw new Error(`host-overhead bench: the amp step was not replayed (${captured.refusal ?? JSON.stringify(captured.replays)})`);
    }
    results.push(row(shape, 'ours, replayed amp', replayed, batch));
    captured.dispose();
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
  await captured.settled();
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

/**
 * The floor under any replay: the WebGPU implementation's own cost of the two encoder calls per dispatch
 * (setBindGroup, dispatchWorkgroups) of an empty-bodied kernel with four storage buffers, 2,000 of them on one
 * pass and nothing submitted until they are timed — with the uniforms at a dynamic offset (eager dispatches) and
 * in a fixed slot (replays once settled). No library code runs between the calls.
 */
async function encoderFloorRows(rounds: number): Promise<Result[]> {
  const engine = getEngine();
  const device = engine.device;
  const kernel = engine.kernel('bench:encoder-floor', () => ({
    name: 'encoder_floor',
    outputs: { a: 'f32' },
    inputs: { b: 'f32', c: 'f32', d: 'f32' },
    uniforms: { n: 'u32' } as const,
    wgsl: `@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < u.n) { a[g.x] = b[g.x] + c[g.x] + d[g.x]; }
}`,
  }));
  const fixed = await kernel.fixedUniforms();
  const N = 2000;
  const buffers = Array.from({ length: 16 }, () => device.createBuffer({ size: 256, usage: GPUBufferUsage.STORAGE }));
  const uniforms = device.createBuffer({ size: 256 * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const entries = (j: number, offset?: number): GPUBindGroupEntry[] => [
    ...[0, 1, 2, 3].map((b) => ({ binding: b, resource: { buffer: buffers[(j + 5 * b) % 16] } })),
    { binding: 4, resource: { buffer: uniforms, offset, size: kernel.uniformBytes } },
  ];
  // Sixteen bind groups in turn, as a step binds other tensors at each dispatch.
  const dynamicGroups = Array.from({ length: 16 }, (_, j) => device.createBindGroup({ layout: kernel.layout, entries: entries(j) }));
  const fixedGroups = Array.from({ length: 16 }, (_, j) => device.createBindGroup({ layout: fixed.layout, entries: entries(j, 256 * j) }));
  const time = (form: 'dynamic' | 'fixed'): number => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(form === 'dynamic' ? kernel.pipeline : fixed.pipeline);
    const offset = new Uint32Array(1);
    const t0 = performance.now();
    if (form === 'dynamic') {
      for (let i = 0; i < N; i++) {
        offset[0] = 256 * (i & 15);
        pass.setBindGroup(0, dynamicGroups[i & 15], offset, 0, 1);
        pass.dispatchWorkgroups(0);
      }
    } else {
      for (let i = 0; i < N; i++) {
        pass.setBindGroup(0, fixedGroups[i & 15]);
        pass.dispatchWorkgroups(0);
      }
    }
    const ms = performance.now() - t0;
    pass.end();
    device.queue.submit([encoder.finish()]);
    return ms;
  };
  const samples = { dynamic: [] as number[], fixed: [] as number[] };
  for (let r = 0; r < rounds; r++) for (const form of ['dynamic', 'fixed'] as const) samples[form].push(time(form)); // interleaved
  await engine.sync();
  for (const b of [...buffers, uniforms]) b.destroy();
  const shape = `encoder calls alone: ${N.toLocaleString('en')} dispatches, 4 buffers`;
  return (['dynamic', 'fixed'] as const).map((form) => {
    const ms = median(samples[form]);
    const impl = form === 'dynamic' ? 'WebGPU floor, dynamic offset' : 'WebGPU floor, fixed slot';
    const host: HostCost = { dispatches: N, submits: 0, recordMs: ms, submitMs: 0, usPerDispatch: (1000 * ms) / N, share: 1 };
    return { kernel: 'host overhead', shape, impl, ms, gpuMs: null, rate: 0, unit: 'images/s', host };
  });
}

export async function benchHost({ quick }: { quick: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  results.push(...(await encoderFloorRows(quick ? 5 : 9)));
  results.push(...(await tinyChainRows(5)));
  results.push(...(await trainRows('ViT-scenes', CONFIGS['ViT-scenes'], 64, quick ? 3 : 5)));
  if (!quick) results.push(...(await trainRows('ViT-B/32', CONFIGS['ViT-B/32'], 8, 3)));
  results.push(...(await zeroShotRows(quick ? 3 : 5)));
  return results;
}
