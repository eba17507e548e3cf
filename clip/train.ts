// Training CLIP from scratch (nanoGPT-style: a flat, explicit loop). Built-in data: the seeded scene
// generator (clip/data/scenes.ts). AdamW with the paper's β2 = 0.98 and ε = 1e-6, weight decay on weight
// matrices only, cosine schedule with warmup, logit scale clamped at ln 100 after every step (§2.5), periodic
// zero-shot and retrieval evaluation, JSONL metrics, SVG curves, atomic checkpoints, exact resume.
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../kernels/index.ts';
import { loadCheckpoint, saveCheckpoint } from '../nn/checkpoint.ts';
import { AdamW, clipGradNorm, cosineWithWarmup, decayGroups } from '../nn/optim.ts';
import type { ClipConfig } from './config.ts';
import { compositionClasses, example, render } from './data/scenes.ts';
import { retrievalRecall, textEncoderFor, topK, zeroShotClassifier, zeroShotProbabilities } from './evaluate.ts';
import { CLIP, clipLoss, l2normalize } from './model.ts';
import { lineChart } from './plot.ts';
import { Tokenizer, saveBpe, trainBpe } from './tokenizer.ts';
import { saveClip } from './weights.ts';

export interface TrainOptions {
  config: ClipConfig;
  batchSize: number;
  steps: number;
  lr: number;
  weightDecay: number;
  warmup: number;
  seed: number;
  out: string;
  evalEvery: number;
  saveEvery: number;
  resume: boolean;
  /** Global gradient-norm clip (0: off). */
  clipGrad: number;
  /** Micro-batches per step (open_clip's --accum-freq): the contrastive batch is batchSize, memory that of one micro-batch. */
  accumFreq: number;
  /** BPE vocabulary size trained on the captions (the shipped CLIP vocabulary when 0). */
  vocabSize: number;
  log: (line: string) => void;
}

/** Images [B, 3, n, n] and token ids [B, L] of examples start … start + B − 1. */
function batch(seed: number, start: number, size: number, n: number, tokenizer: Tokenizer, contextLength: number, split: 'train' | 'heldOut' = 'train') {
  const pixels = new Float32Array(size * 3 * n * n);
  const captions: string[] = [];
  for (let i = 0; i < size; i++) {
    const ex = example(seed, start + i, split);
    render(ex, n, pixels, i * 3 * n * n, split === 'train' ? 24 : 0, start + i);
    captions.push(ex.caption);
  }
  return { pixels, tokens: tokenizer.tokenize(captions, { contextLength }), captions };
}

const EVAL_TEMPLATES = [(c: string) => `a ${c}`, (c: string) => `a photo of a ${c}`, (c: string) => `there is a ${c}`, (c: string) => `a ${c} on a black background`];

export interface EvalResult {
  heldOutTop1: number;
  seenTop1: number;
  imageToTextR1: number;
  imageToTextR5: number;
  textToImageR1: number;
  textToImageR5: number;
}

/** Zero-shot top-1 over all colour–shape classes on held-out and seen compositions, and retrieval recall. */
export async function evaluate(model: CLIP, tokenizer: Tokenizer, seed: number): Promise<EvalResult> {
  model.eval();
  const n = model.config.imageResolution;
  const L = model.config.contextLength;
  const { names } = compositionClasses();
  const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), names, EVAL_TEMPLATES);
  const classify = async (split: 'train' | 'heldOut', count: number) => {
    // Evaluation indices are far from training ones; seen compositions use single-object scenes only.
    const examples = [];
    for (let i = 0; examples.length < count; i++) {
      const ex = example(seed + 1, 10_000_000 + i, split);
      if (ex.objects.length === 1) examples.push(ex);
    }
    const pixels = new Float32Array(count * 3 * n * n);
    examples.forEach((ex, i) => render(ex, n, pixels, i * 3 * n * n));
    const labels = examples.map((ex) => names.indexOf(`${ex.objects[0].color} ${ex.objects[0].shape}`));
    const features = T.noGrad(() => T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(pixels, [count, 3, n, n])))));
    const probs = zeroShotProbabilities(features, classifier);
    const acc = topK(await probs.data(), names.length, labels, [1])[1];
    features.dispose();
    probs.dispose();
    return acc;
  };
  const heldOutTop1 = await classify('heldOut', 120);
  const seenTop1 = await classify('train', 120);
  const test = batch(seed + 2, 20_000_000, 100, n, tokenizer, L);
  const [img, txt] = T.noGrad(() => [
    T.tidy(() => l2normalize(model.encodeImage(T.Tensor.from(test.pixels, [100, 3, n, n])))),
    T.tidy(() => l2normalize(model.encodeText(T.Tensor.from(test.tokens, [100, L], 'i32')))),
  ]);
  const recall = await retrievalRecall(img, txt, [1, 5]);
  for (const t of [classifier, img, txt]) t.dispose();
  model.train();
  return { heldOutTop1, seenTop1, imageToTextR1: recall.imageToText[1], imageToTextR5: recall.imageToText[5], textToImageR1: recall.textToImage[1], textToImageR5: recall.textToImage[5] };
}

function progressLine(fields: Record<string, string>): string {
  return Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('  ');
}

export async function train(o: TrainOptions): Promise<EvalResult> {
  if (!Number.isInteger(o.accumFreq) || o.accumFreq < 1 || o.batchSize % o.accumFreq !== 0) {
    throw new RangeError(`train: --accum-freq ${o.accumFreq} must be a positive integer dividing --batch-size ${o.batchSize}`);
  }
  mkdirSync(o.out, { recursive: true });
  const checkpointPath = join(o.out, 'checkpoint.safetensors');
  const vocabPath = join(o.out, 'vocab.txt.gz');
  const metricsPath = join(o.out, 'metrics.jsonl');

  // A small vocabulary learned from the captions keeps the embedding table (and its update) small.
  let tokenizer: Tokenizer;
  if (o.vocabSize > 0) {
    if (!(o.resume && existsSync(vocabPath))) saveBpe(vocabPath, trainBpe(Array.from({ length: 4000 }, (_, i) => example(o.seed, 30_000_000 + i).caption), o.vocabSize));
    tokenizer = Tokenizer.fromFile(vocabPath, o.vocabSize);
  } else tokenizer = Tokenizer.fromFile();
  const config: ClipConfig = { ...o.config, vocabSize: tokenizer.vocabSize };

  T.manualSeed(o.seed);
  const model = new CLIP(config);
  model.train();
  const { decay, noDecay } = decayGroups(model.namedParameters());
  const optimizer = new AdamW([{ params: decay }, { params: noDecay, options: { weightDecay: 0 } }], { lr: o.lr, beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: o.weightDecay });
  const schedule = cosineWithWarmup({ baseLr: o.lr, warmup: o.warmup, total: o.steps });
  let start = 0;
  if (o.resume && existsSync(checkpointPath)) {
    start = loadCheckpoint(checkpointPath, model, optimizer).step;
    o.log(`resumed from ${checkpointPath} at step ${start}`);
  } else writeFileSync(metricsPath, '');

  const n = config.imageResolution;
  const L = config.contextLength;
  const history: { step: number; loss: number }[] = [];
  const evals: ({ step: number } & EvalResult)[] = [];
  const save = (step: number) => saveCheckpoint(checkpointPath, model, optimizer, { step, rng: T.defaultGenerator.state(), extra: { config } });
  const began = performance.now();
  let next = batch(o.seed, start * o.batchSize, o.batchSize, n, tokenizer, L);
  let last: EvalResult | null = null;
  for (let step = start; step < o.steps; step++) {
    const { pixels, tokens } = next;
    const lr = schedule(step);
    optimizer.setLr(lr);
    let loss: T.Tensor;
    if (o.accumFreq > 1) {
      const m = o.batchSize / o.accumFreq;
      const chunk = (k: number) => [T.Tensor.from(pixels.subarray(k * m * 3 * n * n, (k + 1) * m * 3 * n * n), [m, 3, n, n]), T.Tensor.from(tokens.subarray(k * m * L, (k + 1) * m * L), [m, L], 'i32')];
      const chunks = Array.from({ length: o.accumFreq }, (_, k) => chunk(k));
      loss = model.accumulatedLoss(chunks.map((c) => c[0]), chunks.map((c) => c[1]));
      for (const c of chunks.flat()) c.dispose();
    } else {
      loss = T.tidy(() => {
        const out = model.forward(T.Tensor.from(pixels, [o.batchSize, 3, n, n]), T.Tensor.from(tokens, [o.batchSize, L], 'i32'));
        return clipLoss(out.logitsPerImage, out.logitsPerText);
      });
      T.backward(loss);
    }
    if (o.clipGrad > 0) clipGradNorm(model.parameters(), o.clipGrad).dispose();
    optimizer.step();
    optimizer.zeroGrad();
    T.noGrad(() => T.tidy(() => T.assign(model.logitScale, T.clamp(model.logitScale, 0, Math.log(100)))));
    // Draw the next batch on the CPU while the GPU runs this step; the loss readback waits for both.
    if (step + 1 < o.steps) next = batch(o.seed, (step + 1) * o.batchSize, o.batchSize, n, tokenizer, L);
    const value = await loss.item();
    loss.dispose();
    if (!Number.isFinite(value)) {
      throw new Error(`loss is ${value} at step ${step}: stopping; the last good checkpoint (${checkpointPath}) is kept`);
    }
    history.push({ step, loss: value });
    const scale = Math.exp(Math.min(Math.log(100), (await model.logitScale.item())));
    const done = step + 1 - start;
    const seconds = (performance.now() - began) / 1000;
    const record = { step: step + 1, loss: value, lr, logit_scale: scale, images_per_s: (done * o.batchSize) / seconds, gpu_live_bytes: T.memory().liveBytes };
    appendFileSync(metricsPath, `${JSON.stringify(record)}\n`);
    if ((step + 1) % 10 === 0 || step + 1 === o.steps) {
      const eta = ((o.steps - step - 1) * seconds) / done;
      o.log(progressLine({ step: `${step + 1}/${o.steps}`, loss: value.toFixed(4), lr: lr.toExponential(2), scale: scale.toFixed(1), 'img/s': record.images_per_s.toFixed(0), eta: `${Math.round(eta)}s` }));
    }
    if ((step + 1) % o.evalEvery === 0 || step + 1 === o.steps) {
      last = await evaluate(model, tokenizer, o.seed);
      evals.push({ step: step + 1, ...last });
      appendFileSync(metricsPath, `${JSON.stringify({ step: step + 1, eval: last })}\n`);
      o.log(progressLine({ eval: `step ${step + 1}`, 'zero-shot held-out': `${(100 * last.heldOutTop1).toFixed(1)}%`, seen: `${(100 * last.seenTop1).toFixed(1)}%`, 'R@1 i→t': last.imageToTextR1.toFixed(2), 't→i': last.textToImageR1.toFixed(2) }));
    }
    if ((step + 1) % o.saveEvery === 0 || step + 1 === o.steps) await save(step + 1);
  }
  await saveClip(join(o.out, 'model.safetensors'), model);
  writeFileSync(join(o.out, 'loss.svg'), lineChart('training loss', 'step', [{ name: 'contrastive loss', points: history.map((h) => [h.step, h.loss]), color: '#1f77b4' }]));
  writeFileSync(join(o.out, 'accuracy.svg'), lineChart('zero-shot top-1 and retrieval', 'step', [
    { name: 'held-out compositions', points: evals.map((e) => [e.step, e.heldOutTop1]), color: '#d62728' },
    { name: 'seen compositions', points: evals.map((e) => [e.step, e.seenTop1]), color: '#2ca02c' },
    { name: 'R@1 image→text', points: evals.map((e) => [e.step, e.imageToTextR1]), color: '#9467bd' },
  ]));
  const result = last ?? (await evaluate(model, tokenizer, o.seed));
  model.dispose();
  optimizer.dispose();
  return result;
}
