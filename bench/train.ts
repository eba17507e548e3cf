// One CLIP training step (forward, symmetric contrastive loss, backward, AdamW) in images/s, next to the same
// model trained by PyTorch on the CPU (bench/torch_clip_step.py) when python3 with torch is installed — a
// one-off peer; nothing in the project needs Python. Where the device has shader-f16, also the step in amp
// (trainStepAmp: f16 compute, loss scaling, one finiteness readback per step).
import { CONFIGS, type ClipConfig } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep, trainStepAmp } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import { BENCH_VOCAB as VOCAB, tokenBatch, type Result } from './harness.ts';
import { runTorch } from './torch.ts';

/** Images/s of training steps on a fixed random batch; validated first: the loss is finite, starts near
 * ln(batch) (random features) and falls over a few steps on that batch (the step really trains). */
async function oursPerSecond(config: ClipConfig, batch: number, steps: number, precision: 'fp32' | 'amp' = 'fp32'): Promise<number> {
  T.manualSeed(0);
  const model = new CLIP({ ...config, vocabSize: VOCAB });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
  const images = T.keep(T.randNormal([batch, 3, config.imageResolution, config.imageResolution]));
  const tokens = T.keep(tokenBatch(batch, config.contextLength));
  const scaler = new GradScaler();
  // An amp step has read its finiteness flag back before it returns (its loss is ready soon after).
  const step =
    precision === 'amp'
      ? async () => (await trainStepAmp(model, optimizer, scaler, images, tokens)).loss
      : async () => trainStep(model, optimizer, images, tokens);
  const first = await (await step()).item();
  let last = first;
  for (let i = 0; i < 5; i++) last = await (await step()).item();
  if (!Number.isFinite(first) || Math.abs(first - Math.log(batch)) > 1.5 || !(last < first)) {
    throw new Error(
      `train-step validation (${precision}): losses ${first} → ${last} ` +
        `(expected ≈ ln ${batch} = ${Math.log(batch).toFixed(2)}, then falling)`,
    );
  }
  const t0 = performance.now();
  let pending: T.Tensor | null = null;
  for (let i = 0; i < steps; i++) {
    const loss = await step();
    // As the trainer does: read the previous loss while this step runs.
    if (pending) await pending.item();
    pending = loss;
  }
  await pending!.item();
  const ms = (performance.now() - t0) / steps;
  model.dispose();
  optimizer.dispose();
  images.dispose();
  tokens.dispose();
  return (1000 * batch) / ms;
}

export async function benchTrain({ quick, peer }: { quick: boolean; peer: boolean }): Promise<Result[]> {
  const results: Result[] = [];
  for (const [name, batch] of quick ? [['ViT-tiny', 64] as const] : [['ViT-tiny', 64] as const, ['ViT-scenes', 64] as const]) {
    const config = CONFIGS[name];
    const shape = `${name}, batch ${batch}`;
    const perSecond = await oursPerSecond(config, batch, quick ? 5 : 20);
    results.push({ kernel: 'CLIP train step', shape, impl: 'ours', ms: (1000 * batch) / perSecond, gpuMs: null, rate: perSecond, unit: 'images/s' });
    if (T.gpu().hasFeature('shader-f16')) {
      const amp = await oursPerSecond(config, batch, quick ? 5 : 20, 'amp');
      results.push({ kernel: 'CLIP train step', shape, impl: 'ours (amp)', ms: (1000 * batch) / amp, gpuMs: null, rate: amp, unit: 'images/s' });
    }
    const torch = peer ? runTorch(config, VOCAB, batch) : null;
    if (torch) {
      results.push({
        kernel: 'CLIP train step',
        shape,
        impl: torch.impl,
        ms: (1000 * batch) / torch.images_per_s,
        gpuMs: null,
        rate: torch.images_per_s,
        unit: 'images/s',
      });
    }
  }
  return results;
}
