// Training CLIP from scratch, as a flat and explicit loop (nanoGPT's train.py is the model): everything it
// uses is defined elsewhere — data sources in clip/data/, the step in clip/step.ts, evaluation in
// clip/evaluate.ts, plots in clip/plot.ts. AdamW with the paper's β2 = 0.98 and ε = 1e-6, weight decay on
// weight matrices only, cosine schedule with warmup; periodic zero-shot and retrieval evaluation, JSONL
// metrics, SVG curves, atomic checkpoints, exact resume.
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { loadCheckpoint, saveCheckpoint } from '../nn/io/checkpoint.ts';
import { AdamW, cosineWithWarmup, decayGroups } from '../nn/optim.ts';
import type { ClipConfig } from './config.ts';
import { trainingData } from './data/index.ts';
import { evaluateClip, type EvalResult } from './evaluate.ts';
import { CLIP } from './model.ts';
import { evalChart, lossChart } from './plot.ts';
import { trainStep } from './step.ts';
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
  /** A CSV/TSV of filepath,caption, a folder of images with .txt captions, or webdataset shards (overrides `dataset`). */
  trainData?: string;
  /** A built-in dataset (clip/data/index.ts); 'scenes' by default. */
  dataset?: string;
  log: (line: string) => void;
}

export async function train(o: TrainOptions): Promise<EvalResult> {
  if (!Number.isInteger(o.accumFreq) || o.accumFreq < 1 || o.batchSize % o.accumFreq !== 0) {
    throw new RangeError(`train: --accum-freq ${o.accumFreq} must be a positive integer dividing --batch-size ${o.batchSize}`);
  }
  const data = trainingData({ dataset: o.dataset, trainData: o.trainData, seed: o.seed, log: o.log });
  mkdirSync(o.out, { recursive: true });
  const checkpointPath = join(o.out, 'checkpoint.safetensors');
  const vocabPath = join(o.out, 'vocab.txt.gz');
  const metricsPath = join(o.out, 'metrics.jsonl');

  // A small vocabulary learned from the captions keeps the embedding table (and its update) small.
  if (o.vocabSize > 0 && !(o.resume && existsSync(vocabPath))) saveBpe(vocabPath, trainBpe(data.corpus(4000), o.vocabSize));
  const tokenizer = o.vocabSize > 0 ? Tokenizer.fromFile(vocabPath, o.vocabSize) : Tokenizer.fromFile();
  const config: ClipConfig = { ...o.config, vocabSize: tokenizer.vocabSize };
  const n = config.imageResolution;
  const L = config.contextLength;

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
  const save = (step: number) => saveCheckpoint(checkpointPath, model, optimizer, { step, rng: T.defaultGenerator.state(), extra: { config } });

  const history: { step: number; loss: number }[] = [];
  const evals: { step: number; metrics: Record<string, number> }[] = [];
  let last: EvalResult | null = null;
  const began = performance.now();
  const batchAt = (step: number) => {
    const b = data.batch(step * o.batchSize, o.batchSize, n);
    return { pixels: b.pixels, tokens: tokenizer.tokenize(b.captions, { contextLength: L }) };
  };
  let next = batchAt(start);
  for (let step = start; step < o.steps; step++) {
    const images = T.Tensor.from(next.pixels, [o.batchSize, 3, n, n]);
    const tokens = T.Tensor.from(next.tokens, [o.batchSize, L], 'i32');
    const lr = schedule(step);
    optimizer.setLr(lr);
    const loss = trainStep(model, optimizer, images, tokens, { microBatches: o.accumFreq, clipGrad: o.clipGrad });
    images.dispose();
    tokens.dispose();
    // Draw the next batch on the CPU while the GPU runs this step; the loss readback waits for both.
    if (step + 1 < o.steps) next = batchAt(step + 1);
    const value = await loss.item();
    loss.dispose();
    if (!Number.isFinite(value)) throw new Error(`loss is ${value} at step ${step}: stopping; the last good checkpoint (${checkpointPath}) is kept`);
    history.push({ step, loss: value });

    // Metrics every step (the logit scale only when a progress line is printed: it costs a readback).
    const logged = (step + 1) % 10 === 0 || step + 1 === o.steps;
    const scale = logged ? Math.exp(await model.logitScale.item()) : null;
    const seconds = (performance.now() - began) / 1000;
    const imagesPerSecond = ((step + 1 - start) * o.batchSize) / seconds;
    appendFileSync(metricsPath, `${JSON.stringify({ step: step + 1, loss: value, lr, ...(scale === null ? {} : { logit_scale: scale }), images_per_s: imagesPerSecond, gpu_live_bytes: T.memory().liveBytes })}\n`);
    if (logged) {
      const eta = ((o.steps - step - 1) * seconds) / (step + 1 - start);
      o.log(progressLine({ step: `${step + 1}/${o.steps}`, loss: value.toFixed(4), lr: lr.toExponential(2), scale: scale!.toFixed(1), 'img/s': imagesPerSecond.toFixed(0), eta: `${Math.round(eta)}s` }));
    }

    if ((step + 1) % o.evalEvery === 0 || step + 1 === o.steps) {
      last = await evaluateClip(model, tokenizer, data);
      evals.push({ step: step + 1, metrics: chartMetrics(last) });
      appendFileSync(metricsPath, `${JSON.stringify({ step: step + 1, eval: last })}\n`);
      const zeroShot = Object.fromEntries(Object.entries(last.zeroShot).map(([k, v]) => [`zero-shot ${k}`, `${(100 * v).toFixed(1)}%`]));
      o.log(progressLine({ eval: `step ${step + 1}`, ...zeroShot, 'R@1 i→t': last.imageToTextR1.toFixed(2), 't→i': last.textToImageR1.toFixed(2) }));
    }
    if ((step + 1) % o.saveEvery === 0 || step + 1 === o.steps) await save(step + 1);
  }

  // The weights with the prompts their zero-shot evaluation used, the curves, and the final evaluation.
  if (data.zeroShot) model.prompts = { templates: data.zeroShot.templates, classes: data.zeroShot.classes };
  await saveClip(join(o.out, 'model.safetensors'), model);
  writeFileSync(join(o.out, 'loss.svg'), lossChart(history));
  writeFileSync(join(o.out, 'accuracy.svg'), evalChart(evals));
  const result = last ?? (await evaluateClip(model, tokenizer, data));
  model.dispose();
  optimizer.dispose();
  return result;
}

/** The evaluation numbers drawn in accuracy.svg. */
function chartMetrics(r: EvalResult): Record<string, number> {
  const zeroShot = Object.fromEntries(Object.entries(r.zeroShot).map(([name, top1]) => [`zero-shot: ${name}`, top1]));
  return { ...zeroShot, 'R@1 image→text': r.imageToTextR1, 'R@1 text→image': r.textToImageR1 };
}

function progressLine(fields: Record<string, string>): string {
  return Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('  ');
}
