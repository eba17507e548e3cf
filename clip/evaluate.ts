// Using a trained CLIP: zero-shot classification with prompt ensembling (§3.1.4), retrieval recall@k in both
// directions, and a linear probe (L2-regularised logistic regression on frozen features, §3.2 / Appendix A.3).
import * as T from '../ops/index.ts';
import { AdamW } from '../nn/optim.ts';
import { l2normalize, type CLIP } from './model.ts';
import type { DataSource } from './data/source.ts';
import { ENSEMBLE_TEMPLATES, fillTemplate } from './prompts.ts';
import type { Tokenizer } from './tokenizer.ts';

/** `encode` applied to normalised images [count, 3, n, n] (host data), `batch` images at a time; rows concatenated. */
function encodeInBatches(model: CLIP, pixels: Float32Array, count: number, encode: (images: T.Tensor) => T.Tensor, batch = 256): T.Tensor {
  const n = model.config.imageResolution;
  const per = 3 * n * n;
  return T.noGrad(() =>
    T.tidy(() => {
      const parts: T.Tensor[] = [];
      for (let start = 0; start < count; start += batch) {
        const size = Math.min(batch, count - start);
        parts.push(encode(T.Tensor.from(pixels.subarray(start * per, (start + size) * per), [size, 3, n, n])));
      }
      return parts.length === 1 ? parts[0] : T.concat(parts, 0);
    }),
  );
}

/** L2-normalised embeddings of normalised images [count, 3, n, n] (host data): zero-shot and retrieval. */
export function encodeImages(model: CLIP, pixels: Float32Array, count: number): T.Tensor {
  return encodeInBatches(model, pixels, count, (x) => l2normalize(model.encodeImage(x)));
}

/** Linear-probe features (Appendix A.3): a ViT's representation before the projection, a ResNet's pooled output. */
export function probeFeatures(model: CLIP, pixels: Float32Array, count: number): T.Tensor {
  return encodeInBatches(model, pixels, count, (x) => model.imageRepresentation(x));
}

/** Encodes a batch of prompt strings to features [N, D] (textEncoderFor builds one from a model). */
export type TextEncoder = (texts: string[]) => T.Tensor;

/** A TextEncoder for `model`: tokenizes with `tokenizer` and encodes without recording gradients. */
export function textEncoderFor(model: CLIP, tokenizer: Tokenizer): TextEncoder {
  return (texts) =>
    T.noGrad(() =>
      T.tidy(() =>
        model.encodeText(
          T.Tensor.from(
            tokenizer.tokenize(texts, { contextLength: model.config.contextLength }),
            [texts.length, model.config.contextLength],
            'i32',
          ),
        ),
      ),
    );
}

/**
 * Zero-shot classifier weights [D, classes]: per class, the prompts' text embeddings, each L2-normalised,
 * averaged, and renormalised (prompt ensembling). Templates as in clip/prompts.ts ("a photo of {a} {}").
 */
export function zeroShotClassifier(encodeText: TextEncoder, classNames: readonly string[], templates: readonly string[] = ENSEMBLE_TEMPLATES): T.Tensor {
  return T.noGrad(() =>
    T.tidy(() => {
      const columns = classNames.map((name) =>
        l2normalize(T.mean(l2normalize(encodeText(templates.map((t) => fillTemplate(t, name)))), 0, { keepDims: true })),
      );
      return T.transpose(T.concat(columns, 0));
    }),
  );
}

/** The templates zero-shot classification with `model` uses by default: those it was evaluated with, else OpenAI's ensemble. */
export function defaultTemplates(model: CLIP): readonly string[] {
  return model.prompts?.templates ?? ENSEMBLE_TEMPLATES;
}

/** Class probabilities [N, classes] for L2-normalised image features: softmax(100 · f·W), as in the paper. */
export function zeroShotProbabilities(imageFeatures: T.Tensor, classifier: T.Tensor): T.Tensor {
  return T.noGrad(() => T.tidy(() => T.softmax(T.mul(T.matmul(imageFeatures, classifier), 100))));
}

/** Top-k accuracies of scores [N, classes] against labels (host arrays). */
export function topK(scores: Float32Array | Int32Array, classes: number, labels: ArrayLike<number>, ks: readonly number[] = [1, 5]): Record<number, number> {
  const n = labels.length;
  const hits = Object.fromEntries(ks.map((k) => [k, 0])) as Record<number, number>;
  for (let i = 0; i < n; i++) {
    const row = scores.subarray(i * classes, (i + 1) * classes);
    const target = row[labels[i]];
    // Rank = how many classes score strictly higher (ties favour the label).
    let rank = 0;
    for (let j = 0; j < classes; j++) if (row[j] > target) rank++;
    for (const k of ks) if (rank < k) hits[k]++;
  }
  for (const k of ks) hits[k] /= n;
  return hits;
}

/** Recall@k for paired features (image i ↔ text i), both directions. Features must be L2-normalised. */
export async function retrievalRecall(
  imageFeatures: T.Tensor,
  textFeatures: T.Tensor,
  ks: readonly number[] = [1, 5, 10],
): Promise<{ imageToText: Record<number, number>; textToImage: Record<number, number> }> {
  const n = imageFeatures.shape[0];
  const [sims, simsT] = T.noGrad(() =>
    T.tidy(() => {
      const s = T.matmul(imageFeatures, T.transpose(textFeatures));
      return [s, T.contiguous(T.transpose(s))];
    }),
  );
  const identity = Array.from({ length: n }, (_, i) => i);
  const result = {
    imageToText: topK(await sims.data(), n, identity, ks),
    textToImage: topK(await simsT.data(), n, identity, ks),
  };
  sims.dispose();
  simsT.dispose();
  return result;
}

/** Features [N, D] and i32 labels [N] of one split of a linear probe. */
export interface ProbeSplit {
  features: T.Tensor;
  labels: T.Tensor;
}

/** The chosen L2 penalty λ and the probe's accuracy on the validation and test splits. */
export interface ProbeResult {
  lambda: number;
  validationAccuracy: number;
  testAccuracy: number;
}

async function accuracy(W: T.Tensor, b: T.Tensor, split: ProbeSplit): Promise<number> {
  const correct = T.noGrad(() => T.tidy(() => T.mean(T.cast(T.eq(T.argmax(T.matmul(split.features, W, { bias: b }), -1), split.labels), 'f32'))));
  const v = await correct.item();
  correct.dispose();
  return v;
}

/**
 * Multinomial logistic regression on frozen features with loss CE + λ/2·‖W‖², fitted full-batch (AdamW
 * without decoupled decay, `steps` steps) for each λ in `lambdas` (default one per decade from 1e-6 to 1e2;
 * the paper sweeps 1e-6 … 1e6, and beyond 1e2 every weight here is ~0); the λ with the best validation
 * accuracy is kept and its test accuracy reported. Features are first standardised per dimension with the training
 * split's mean and standard deviation (as a scikit-learn pipeline would): unit-norm CLIP features otherwise
 * need weights of norm ~100 before the logits separate, which a few hundred steps do not reach.
 */
export async function linearProbe(
  train: ProbeSplit,
  validation: ProbeSplit,
  test: ProbeSplit,
  classes: number,
  { lambdas = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100], steps = 300, lr = 0.05 } = {},
): Promise<ProbeResult> {
  const [mean, std] = T.noGrad(() => T.tidy(() => {
    const m = T.mean(train.features, 0, { keepDims: true });
    const d = T.sub(train.features, m);
    return [m, T.sqrt(T.add(T.mean(T.mul(d, d), 0, { keepDims: true }), 1e-12))];
  }));
  const [tr, va, te] = [train, validation, test].map(
    (s): ProbeSplit => ({ features: T.noGrad(() => T.tidy(() => T.div(T.sub(s.features, mean), std))), labels: s.labels }),
  );
  mean.dispose();
  std.dispose();
  try {
    return await fitProbe(tr, va, te, classes, lambdas, steps, lr);
  } finally {
    for (const s of [tr, va, te]) s.features.dispose();
  }
}

async function fitProbe(
  train: ProbeSplit,
  validation: ProbeSplit,
  test: ProbeSplit,
  classes: number,
  lambdas: number[],
  steps: number,
  lr: number,
): Promise<ProbeResult> {
  let best: ProbeResult | null = null;
  const D = train.features.shape[1];
  for (const lambda of lambdas) {
    const W = T.param(T.zeros([D, classes]));
    const b = T.param(T.zeros([classes]));
    const opt = new AdamW([W, b], { lr, weightDecay: 0 });
    for (let s = 0; s < steps; s++) {
      const loss = T.tidy(() => T.add(T.crossEntropy(T.matmul(train.features, W, { bias: b }), train.labels), T.mul(T.sum(T.mul(W, W)), lambda / 2)));
      T.backward(loss);
      loss.dispose();
      opt.step();
      opt.zeroGrad();
    }
    const validationAccuracy = await accuracy(W, b, validation);
    if (!best || validationAccuracy > best.validationAccuracy) best = { lambda, validationAccuracy, testAccuracy: await accuracy(W, b, test) };
    opt.dispose();
    W.dispose();
    b.dispose();
  }
  return best!;
}

/** Recall@k of the validation pairs, both ways. */
export interface RetrievalResult {
  pairs: number;
  imageToTextR1: number;
  imageToTextR5: number;
  textToImageR1: number;
  textToImageR5: number;
}

/** What evaluateClip measures: zero-shot top-1 per image set and retrieval recall. */
export interface EvalResult {
  /** Zero-shot top-1 per image set of the data's zero-shot task (empty without one). */
  zeroShot: Record<string, number>;
  /** Null when no validation pair could be used (every image undecodable). */
  retrieval: RetrievalResult | null;
}

/**
 * The evaluation the trainer runs: retrieval recall on (up to 100) validation pairs, and zero-shot top-1 on
 * every image set of the data's zero-shot task with its own prompts.
 */
export async function evaluateClip(model: CLIP, tokenizer: Tokenizer, data: DataSource): Promise<EvalResult> {
  const wasTraining = model.training;
  model.eval();
  const n = model.config.imageResolution;
  const L = model.config.contextLength;
  const test = data.validation(100, n);
  const count = test.captions.length;
  let retrieval: RetrievalResult | null = null;
  if (count > 0) {
    const img = encodeImages(model, test.pixels, count);
    const txt = T.noGrad(() =>
      T.tidy(() =>
        l2normalize(model.encodeText(T.Tensor.from(tokenizer.tokenize(test.captions, { contextLength: L }), [count, L], 'i32'))),
      ),
    );
    const recall = await retrievalRecall(img, txt, [1, 5]);
    img.dispose();
    txt.dispose();
    retrieval = {
      pairs: count,
      imageToTextR1: recall.imageToText[1],
      imageToTextR5: recall.imageToText[5],
      textToImageR1: recall.textToImage[1],
      textToImageR5: recall.textToImage[5],
    };
  }
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
  model.train(wasTraining);
  return { zeroShot, retrieval };
}
