// One CLIP training step (forward, symmetric contrastive loss, backward, AdamW) in images/s, next to the same
// model trained by PyTorch on the CPU (bench/torch_clip_step.py) when python3 with torch is installed — a
// one-off peer; nothing in the project needs Python. Where the device has shader-f16, also the step in amp
// (trainStepAmp: f16 compute, loss scaling, one finiteness readback per step).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONFIGS, visionHeads, type ClipConfig } from '../clip/config.ts';
import { CLIP } from '../clip/model.ts';
import { trainStep, trainStepAmp } from '../clip/step.ts';
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { GradScaler } from '../nn/precision.ts';
import type { Result } from './harness.ts';

const VOCAB = 1000;

/** Images/s of training steps on a fixed random batch; validated first: the loss is finite, starts near
 * ln(batch) (random features) and falls over a few steps on that batch (the step really trains). */
async function oursPerSecond(config: ClipConfig, batch: number, steps: number, precision: 'fp32' | 'amp' = 'fp32'): Promise<number> {
  T.manualSeed(0);
  const model = new CLIP({ ...config, vocabSize: VOCAB });
  const optimizer = new AdamW(model.parameters(), { lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });
  const L = config.contextLength;
  const images = T.keep(T.randNormal([batch, 3, config.imageResolution, config.imageResolution]));
  const ids = Int32Array.from({ length: batch * L }, (_, i) => (i % L === L >> 1 ? VOCAB - 1 : i % L > L >> 1 ? 0 : 1 + ((i * 7919) % (VOCAB - 2))));
  const tokens = T.keep(T.Tensor.from(ids, [batch, L], 'i32'));
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

/**
 * The PyTorch peer's script, found from this module as the vocabulary is from the tokenizer (../bench from a
 * bundle in the repository's .build/, beside this module in the package, where the build copies it).
 */
const TORCH_STEP = fileURLToPath(new URL('../bench/torch_clip_step.py', import.meta.url));

function torchPerSecond(config: ClipConfig, batch: number): { impl: string; images_per_s: number } | null {
  // $PYTHON, else the first python3 that has torch (a pyenv shim may shadow Debian's /usr/bin/python3).
  const python = [process.env.PYTHON, 'python3', '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch']).status === 0);
  if (!python) return null;
  const args = [TORCH_STEP, '--threads', '2', '--batch', String(batch), '--res', String(config.imageResolution), '--patch', String(config.visionPatchSize),
    '--width', String(config.visionWidth), '--heads', String(visionHeads(config)), '--layers', String(config.visionLayers),
    '--embed', String(config.embedDim), '--text-width', String(config.transformerWidth),
    '--text-heads', String(config.transformerHeads), '--text-layers', String(config.transformerLayers),
    '--context', String(config.contextLength), '--vocab', String(VOCAB)];
  const run = spawnSync(python, args, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${TORCH_STEP} failed:\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!);
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
    const torch = peer ? torchPerSecond(config, batch) : null;
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
