// Training CLIP from scratch (nanoGPT-style: a flat, explicit loop). Built-in data: the seeded scene
// generator (clip/data/scenes.ts). AdamW with the paper's β2 = 0.98 and ε = 1e-6, weight decay on weight
// matrices only, cosine schedule with warmup, logit scale clamped at ln 100 after every step (§2.5), periodic
// zero-shot and retrieval evaluation, JSONL metrics, SVG curves, atomic checkpoints, exact resume.
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../ops/index.ts';
import { loadCheckpoint, saveCheckpoint } from '../nn/checkpoint.ts';
import { AdamW, clipGradNorm, cosineWithWarmup, decayGroups } from '../nn/optim.ts';
import type { ClipConfig } from './config.ts';
import { SHAPE_WORLD, compositionClasses, example, greyWorld, render, type Draw, type World } from './data/scenes.ts';
import { loadPair, randomResizedCrop, readPairs, type Pair } from './data/files.ts';
import { greyExample, greyToRgb, loadGreyDataset, renderGrey, splitSize, type GreyDatasetName } from './data/mnist.ts';
import { encodeImages, retrievalRecall, textEncoderFor, topK, zeroShotClassifier, zeroShotProbabilities } from './evaluate.ts';
import { CLIP, clipLoss, l2normalize } from './model.ts';
import { lineChart } from './plot.ts';
import { Tokenizer, saveBpe, trainBpe } from './tokenizer.ts';
import { saveClip } from './weights.ts';
import { withArticle } from './data/text.ts';

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
  /** A CSV/TSV of filepath,caption or a folder of images with .txt captions (overrides `dataset`). */
  trainData?: string;
  /** A built-in dataset: 'scenes' (default) or 'fashion-mnist'. */
  dataset?: string;
  log: (line: string) => void;
}

/** Where training pairs come from. Examples are addressed by index, so batches are reproducible and a resumed
 * run sees exactly the batches an uninterrupted one would. */
export interface DataSource {
  /** Normalised pixels [size, 3, n, n] and captions of training examples start … start + size − 1. */
  batch(start: number, size: number, n: number): { pixels: Float32Array; captions: string[] };
  /** Pairs kept out of training, for retrieval evaluation. */
  validation(count: number, n: number): { pixels: Float32Array; captions: string[] };
  /** Training captions to learn a BPE vocabulary from. */
  corpus(count: number): string[];
  /** Zero-shot classification tasks this data comes with (none for arbitrary captions). */
  zeroShot?: ZeroShotTask;
}

/** Classes, prompt templates and labelled image sets for zero-shot evaluation. */
export interface ZeroShotTask {
  classes: string[];
  templates: ((c: string) => string)[];
  /** Named sets of normalised images [count, 3, n, n] with class labels. */
  sets: { name: string; images: (n: number) => { pixels: Float32Array; labels: number[] } }[];
  /** Label of each image for a linear probe: train / validation / test sets. */
  probe?: (n: number) => { train: LabelledImages; validation: LabelledImages; test: LabelledImages };
}

export interface LabelledImages {
  pixels: Float32Array;
  labels: number[];
}

/** Captioned scenes (clip/data/scenes.ts) of procedural shapes or of coloured MNIST-family images. */
export function sceneSource(world: World, seed: number): DataSource {
  const draw = (s: number, start: number, size: number, n: number, noise: number, how?: Draw) => {
    const pixels = new Float32Array(size * 3 * n * n);
    const captions: string[] = [];
    for (let i = 0; i < size; i++) {
      const ex = example(world, s, start + i, how);
      render(world, ex, how?.split ?? 'train', n, pixels, i * 3 * n * n, noise, start + i);
      captions.push(ex.caption);
    }
    return { pixels, captions };
  };
  return {
    batch: (start, size, n) => draw(seed, start, size, n, 24),
    validation: (count, n) => draw(seed + 2, 0, count, n, 0, { pairs: 'seen', split: 'test' }),
    corpus: (count) => Array.from({ length: count }, (_, i) => example(world, seed, 30_000_000 + i).caption),
    zeroShot: sceneZeroShot(world, seed),
  };
}

const SCENE_TEMPLATES = [(c: string) => withArticle(c), (c: string) => `a photo of ${withArticle(c)}`, (c: string) => `there is ${withArticle(c)}`, (c: string) => `${withArticle(c)} on a black background`];

/** Every colour–kind class; single-object images of held-out and of seen compositions (test drawings). */
function sceneZeroShot(world: World, seed: number): ZeroShotTask {
  const { names } = compositionClasses(world);
  const images = (pairs: Draw['pairs'], split: Draw['split'], count: number, offset: number) => (n: number) => {
    const pixels = new Float32Array(count * 3 * n * n);
    const labels: number[] = [];
    for (let i = 0; i < count; i++) {
      const ex = example(world, seed + 1, offset + i, { pairs, split, single: true });
      render(world, ex, split, n, pixels, i * 3 * n * n);
      labels.push(names.indexOf(`${ex.objects[0].color} ${ex.objects[0].kind}`));
    }
    return { pixels, labels };
  };
  return {
    classes: names,
    templates: SCENE_TEMPLATES,
    sets: [
      { name: 'held-out compositions', images: images('heldOut', 'test', 240, 0) },
      { name: 'seen compositions', images: images('seen', 'test', 240, 0) },
    ],
    probe: (n) => ({ train: images('seen', 'train', 960, 1_000_000)(n), validation: images('seen', 'train', 480, 2_000_000)(n), test: images('seen', 'test', 480, 3_000_000)(n) }),
  };
}

/**
 * Image–caption files (clip/data/files.ts): a seeded shuffle per epoch, RandomResizedCrop for training, the
 * last 10% (at most 500) kept for validation. An image that fails to decode is reported once, counted, and
 * replaced by the next example in the shuffled order.
 */
export function fileSource(pairs: Pair[], seed: number, log: (line: string) => void): DataSource & { failures: () => number } {
  if (pairs.length < 2) throw new Error(`training data: need at least 2 usable image–caption pairs, found ${pairs.length}`);
  const valCount = Math.max(1, Math.min(500, Math.floor(pairs.length / 10)));
  const train = pairs.slice(0, pairs.length - valCount);
  const val = pairs.slice(pairs.length - valCount);
  const reported = new Set<string>();
  let failures = 0;
  let epochOrder: { epoch: number; order: number[] } = { epoch: -1, order: [] };
  const orderOf = (epoch: number) => {
    if (epochOrder.epoch !== epoch) {
      const r = rng32(seed * 7919 + epoch);
      const order = train.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      epochOrder = { epoch, order };
    }
    return epochOrder.order;
  };
  const load = (list: Pair[], indexOf: (k: number) => number, count: number, n: number, augment: boolean, first: number) => {
    const pixels = new Float32Array(count * 3 * n * n);
    const captions: string[] = [];
    for (let i = 0; i < count; i++) {
      for (let k = 0; ; k++) {
        if (k >= list.length) throw new Error('training data: no image could be decoded');
        const pair = list[(indexOf(first + i) + k) % list.length];
        const result = loadPair(pair, n, augment, rng32(seed + first + i));
        if (result instanceof Error) {
          failures++;
          if (!reported.has(pair.image)) {
            reported.add(pair.image);
            log(`skipping unreadable image: ${result.message}`);
          }
          continue;
        }
        pixels.set(result, i * 3 * n * n);
        captions.push(pair.caption);
        break;
      }
    }
    return { pixels, captions };
  };
  return {
    batch: (start, size, n) => load(train, (e) => orderOf(Math.floor(e / train.length))[e % train.length], size, n, true, start),
    validation: (count, n) => load(val, (e) => e % val.length, Math.min(count, val.length), n, false, 0),
    corpus: (count) => train.slice(0, count).map((p) => p.caption),
    failures: () => failures,
  };
}

/**
 * MNIST or Fashion-MNIST (clip/data/mnist.ts): a seeded per-epoch shuffle of the training split with template
 * captions; zero-shot and linear-probe evaluation on the test split.
 */
export function greySource(name: GreyDatasetName, seed: number): DataSource {
  const data = loadGreyDataset(name);
  const { classes, templates } = data.info;
  const trainCount = splitSize(data, 'train');
  const testCount = splitSize(data, 'test');
  // Training batches (`augmentAt`: the position of their first example in the run) get the paper's
  // RandomResizedCrop, seeded by position so a resumed run draws the same crops.
  const draw = (split: 'train' | 'test', indices: number[], n: number, captioned: boolean, augmentAt?: number) => {
    const pixels = new Float32Array(indices.length * 3 * n * n);
    const captions: string[] = [];
    const labels: number[] = [];
    indices.forEach((index, i) => {
      const [label, image] = greyExample(data, split, index);
      if (augmentAt === undefined) renderGrey(image, n, pixels, i * 3 * n * n);
      else pixels.set(randomResizedCrop(greyToRgb(image), n, rng32(seed * 7919 + augmentAt + i)), i * 3 * n * n);
      labels.push(label);
      if (captioned) captions.push(templates[Math.floor(index / classes.length) % templates.length](classes[label]));
    });
    return { pixels, captions, labels };
  };
  // A multiplicative permutation of the training indices per epoch (cheap, seeded, covers every image).
  const shuffled = (e: number) => {
    const epoch = Math.floor(e / trainCount);
    const stride = 2 * ((seed + epoch * 7919) % Math.floor(trainCount / 2)) + 1;
    const offset = (seed * 104729 + epoch * 15485863) % trainCount;
    let a = stride;
    while (gcd(a, trainCount) !== 1) a += 2;
    return ((e % trainCount) * a + offset) % trainCount;
  };
  const range = (start: number, count: number) => Array.from({ length: count }, (_, i) => start + i);
  // Linear probe: up to 12,000 shuffled training images for fitting, the last 2,000 indices (never among them)
  // for choosing λ, the whole test split for the reported accuracy.
  const heldBack = trainCount - 2000;
  const probeIndices: number[] = [];
  for (let e = 0; probeIndices.length < Math.min(12_000, heldBack); e++) if (shuffled(e) < heldBack) probeIndices.push(shuffled(e));
  return {
    batch: (start, size, n) => draw('train', range(start, size).map(shuffled), n, true, start),
    validation: (count, n) => draw('test', range(0, count), n, true),
    corpus: (count) => range(0, count).map((i) => templates[Math.floor(i / classes.length) % templates.length](classes[i % classes.length])),
    zeroShot: {
      classes,
      templates,
      sets: [{ name: 'test split', images: (n) => draw('test', range(0, Math.min(2000, testCount)), n, false) }],
      probe: (n) => ({
        train: draw('train', probeIndices, n, false),
        validation: draw('train', range(heldBack, 2000), n, false),
        test: draw('test', range(0, testCount), n, false),
      }),
    },
  };
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The names `--dataset` accepts. */
export const BUILTIN_DATASETS = ['scenes', 'mnist', 'fashion-mnist', 'mnist-scenes', 'fashion-scenes'] as const;

/** The named built-in datasets: procedural scenes; MNIST and Fashion-MNIST; scenes of their coloured images. */
export function builtinSource(name: string, seed: number): DataSource {
  switch (name) {
    case 'scenes':
      return sceneSource(SHAPE_WORLD, seed);
    case 'mnist':
    case 'fashion-mnist':
      return greySource(name, seed);
    case 'mnist-scenes':
      return sceneSource(greyWorld('mnist'), seed);
    case 'fashion-scenes':
      return sceneSource(greyWorld('fashion-mnist'), seed);
  }
  throw new Error(`unknown dataset '${name}' (built in: ${BUILTIN_DATASETS.join(', ')}; or --train-data PATH)`);
}

/** A seeded uniform [0, 1) generator (mulberry32). */
function rng32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface EvalResult {
  /** Zero-shot top-1 per image set of the data's zero-shot task (empty without one). */
  zeroShot: Record<string, number>;
  imageToTextR1: number;
  imageToTextR5: number;
  textToImageR1: number;
  textToImageR5: number;
}

/** Retrieval recall on validation pairs, and zero-shot top-1 on every set of the data's zero-shot task. */
export async function evaluate(model: CLIP, tokenizer: Tokenizer, data: DataSource): Promise<EvalResult> {
  model.eval();
  const n = model.config.imageResolution;
  const L = model.config.contextLength;
  const test = data.validation(100, n);
  const count = test.captions.length;
  const img = encodeImages(model, test.pixels, count);
  const txt = T.noGrad(() => T.tidy(() => l2normalize(model.encodeText(T.Tensor.from(tokenizer.tokenize(test.captions, { contextLength: L }), [count, L], 'i32')))));
  const recall = await retrievalRecall(img, txt, [1, 5]);
  img.dispose();
  txt.dispose();
  const zeroShot: Record<string, number> = {};
  const task = data.zeroShot;
  if (task) {
    const classifier = zeroShotClassifier(textEncoderFor(model, tokenizer), task.classes, task.templates);
    for (const set of task.sets) {
      const { pixels, labels } = set.images(n);
      const features = encodeImages(model, pixels, labels.length);
      const probs = zeroShotProbabilities(features, classifier);
      zeroShot[set.name] = topK(await probs.data(), task.classes.length, labels, [1])[1];
      features.dispose();
      probs.dispose();
    }
    classifier.dispose();
  }
  model.train();
  return { zeroShot, imageToTextR1: recall.imageToText[1], imageToTextR5: recall.imageToText[5], textToImageR1: recall.textToImage[1], textToImageR5: recall.textToImage[5] };
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

  let data: DataSource = builtinSource(o.dataset ?? 'scenes', o.seed);
  if (o.trainData) {
    const listing = readPairs(o.trainData);
    o.log(`${o.trainData}: ${listing.pairs.length} image–caption pairs, ${listing.skipped.length} skipped`);
    for (const line of listing.skipped.slice(0, 10)) o.log(`  skipped ${line}`);
    if (listing.skipped.length > 10) o.log(`  … and ${listing.skipped.length - 10} more`);
    data = fileSource(listing.pairs, o.seed, o.log);
  }
  // A small vocabulary learned from the captions keeps the embedding table (and its update) small.
  let tokenizer: Tokenizer;
  if (o.vocabSize > 0) {
    if (!(o.resume && existsSync(vocabPath))) saveBpe(vocabPath, trainBpe(data.corpus(4000), o.vocabSize));
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
  const batchAt = (step: number) => {
    const b = data.batch(step * o.batchSize, o.batchSize, n);
    return { pixels: b.pixels, tokens: tokenizer.tokenize(b.captions, { contextLength: L }) };
  };
  let next = batchAt(start);
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
    if (step + 1 < o.steps) next = batchAt(step + 1);
    const value = await loss.item();
    loss.dispose();
    if (!Number.isFinite(value)) {
      throw new Error(`loss is ${value} at step ${step}: stopping; the last good checkpoint (${checkpointPath}) is kept`);
    }
    history.push({ step, loss: value });
    // The loss is read every step (NaN check, metrics); the logit scale only when a progress line is printed.
    const logged = (step + 1) % 10 === 0 || step + 1 === o.steps;
    const scale = logged ? Math.exp(await model.logitScale.item()) : null;
    const done = step + 1 - start;
    const seconds = (performance.now() - began) / 1000;
    const record = { step: step + 1, loss: value, lr, ...(scale === null ? {} : { logit_scale: scale }), images_per_s: (done * o.batchSize) / seconds, gpu_live_bytes: T.memory().liveBytes };
    appendFileSync(metricsPath, `${JSON.stringify(record)}\n`);
    if (logged) {
      const eta = ((o.steps - step - 1) * seconds) / done;
      o.log(progressLine({ step: `${step + 1}/${o.steps}`, loss: value.toFixed(4), lr: lr.toExponential(2), scale: scale!.toFixed(1), 'img/s': record.images_per_s.toFixed(0), eta: `${Math.round(eta)}s` }));
    }
    if ((step + 1) % o.evalEvery === 0 || step + 1 === o.steps) {
      last = await evaluate(model, tokenizer, data);
      evals.push({ step: step + 1, ...last });
      appendFileSync(metricsPath, `${JSON.stringify({ step: step + 1, eval: last })}\n`);
      const zeroShot = Object.fromEntries(Object.entries(last.zeroShot).map(([k, v]) => [`zero-shot ${k}`, `${(100 * v).toFixed(1)}%`]));
      o.log(progressLine({ eval: `step ${step + 1}`, ...zeroShot, 'R@1 i→t': last.imageToTextR1.toFixed(2), 't→i': last.textToImageR1.toFixed(2) }));
    }
    if ((step + 1) % o.saveEvery === 0 || step + 1 === o.steps) await save(step + 1);
  }
  await saveClip(join(o.out, 'model.safetensors'), model);
  writeFileSync(join(o.out, 'loss.svg'), lineChart('training loss', 'step', [{ name: 'contrastive loss', points: history.map((h) => [h.step, h.loss]), color: '#1f77b4' }]));
  const colors = ['#d62728', '#2ca02c', '#ff7f0e', '#1f77b4'];
  writeFileSync(join(o.out, 'accuracy.svg'), lineChart('zero-shot top-1 and retrieval', 'step', [
    ...Object.keys(evals[0]?.zeroShot ?? {}).map((name, i) => ({ name: `zero-shot: ${name}`, points: evals.map((e): [number, number] => [e.step, e.zeroShot[name]]), color: colors[i % colors.length] })),
    { name: 'R@1 image→text', points: evals.map((e) => [e.step, e.imageToTextR1]), color: '#9467bd' },
  ]));
  const result = last ?? (await evaluate(model, tokenizer, data));
  model.dispose();
  optimizer.dispose();
  return result;
}
