// One CLIP training step (forward, symmetric contrastive loss, backward, AdamW) in images/s, as the trainer runs
// it — captured and replayed (core/capture.ts; amp in two halves around its finiteness readback) — next to the
// same model trained by PyTorch on the CPU (bench/torch_clip_step.py) when python3 with torch is installed, a
// one-off peer; nothing in the project needs Python. Ours and PyTorch alternate round by round (A B A B …) on the
// same cores, and the ratio is the median of the rounds' ratios with its range. Where the device has
// shader-f16, also the step in amp (f16 compute, loss scaling, one finiteness readback per step).
import { CONFIGS, type ClipConfig } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { CapturedAmpStep, trainStep } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { BENCH_VOCAB as VOCAB, tokenBatch, type Result } from './harness.ts';
import { median } from './timing.ts';
import { runTorch } from './torch.ts';

/** A model, its optimizer and a fixed random batch, with the trainer's replayed step; timed in rounds. */
async function ourStep(config: ClipConfig, batch: number, precision: 'fp32' | 'amp') {
  T.manualSeed(0);
  const model = new CLIP({ ...config, vocabSize: VOCAB });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
  const images = T.keep(T.randNormal([batch, 3, config.imageResolution, config.imageResolution]));
  const tokens = T.keep(tokenBatch(batch, config.contextLength));
  const captured = new T.CapturedStep((x: T.Tensor, t: T.Tensor) => trainStep(model, optimizer, x, t), 'train step');
  const amp = precision === 'amp' ? new CapturedAmpStep(model, optimizer, new GradScaler()) : null;
  // An amp step has read its finiteness flag back before it returns (its loss is ready soon after).
  const step = async () => (amp ? (await amp.run(images, tokens)).loss : captured.run(images, tokens));
  // Validated first: the loss is finite, starts near ln(batch) (random features) and falls over a few steps on
  // that batch (the step really trains); by then the step is recorded and replays.
  const first = await (await step()).item();
  let last = first;
  for (let i = 0; i < 5; i++) last = await (await step()).item();
  if (!Number.isFinite(first) || Math.abs(first - Math.log(batch)) > 1.5 || !(last < first)) {
    const expected = `expected ≈ ln ${batch} = ${Math.log(batch).toFixed(2)}, then falling`;
    throw new Error(`train-step validation (${precision}): losses ${first} → ${last} (${expected})`);
  }
  await (amp ?? captured).settled();
  const refusal = amp ? amp.refusal : captured.refusal;
  if (refusal) throw new Error(`train-step: ${refusal}`);
  return {
    /** Images/s over `steps` steps, reading each loss while the next step runs (as the trainer does). */
    async time(steps: number): Promise<number> {
      const t0 = performance.now();
      let pending: T.Tensor | null = null;
      for (let i = 0; i < steps; i++) {
        const loss = await step();
        if (pending) (await pending.item(), pending.dispose());
        pending = loss;
      }
      await pending!.item();
      pending!.dispose();
      return (1000 * batch * steps) / (performance.now() - t0);
    },
    dispose() {
      for (const t of [captured, amp, model, optimizer, images, tokens]) t?.dispose();
    },
  };
}

export async function benchTrain({ quick, peer }: { quick: boolean; peer: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  const rounds = quick ? 2 : 3;
  const steps = quick ? 5 : 10;
  for (const [name, batch] of quick ? [['ViT-tiny', 64] as const] : [['ViT-tiny', 64] as const, ['ViT-scenes', 64] as const]) {
    const config = CONFIGS[name];
    const shape = `${name}, batch ${batch}`;
    const precisions = T.gpu().hasFeature('shader-f16') ? (['fp32', 'amp'] as const) : (['fp32'] as const);
    const ours = { fp32: [] as number[], amp: [] as number[] };
    const torch: number[] = [];
    let torchImpl = '';
    const steppers = { fp32: await ourStep(config, batch, 'fp32'), amp: precisions.length > 1 ? await ourStep(config, batch, 'amp') : null };
    for (let r = 0; r < rounds; r++) {
      for (const precision of precisions) ours[precision].push(await steppers[precision]!.time(steps));
      const run = peer ? runTorch(config, VOCAB, batch, { steps: 2 * steps }) : null;
      if (run) (torch.push(run.images_per_s), (torchImpl = run.impl));
    }
    for (const s of Object.values(steppers)) s?.dispose();
    for (const precision of precisions) {
      const rate = median(ours[precision]);
      const ratios = torch.length ? ours[precision].map((x, r) => x / torch[r]).sort((a, b) => a - b) : [];
      results.push({
        kernel: 'CLIP train step',
        shape,
        impl: precision === 'amp' ? 'ours (amp, replayed)' : 'ours (replayed)',
        ms: (1000 * batch) / rate,
        gpuMs: null,
        rate,
        unit: 'images/s',
        ...(ratios.length ? { vsPeer: { median: median(ratios), lo: ratios[0], hi: ratios[ratios.length - 1] } } : {}),
      });
    }
    if (torch.length) {
      const rate = median(torch);
      results.push({ kernel: 'CLIP train step', shape, impl: torchImpl, ms: (1000 * batch) / rate, gpuMs: null, rate, unit: 'images/s' });
    }
  }
  return results;
}
