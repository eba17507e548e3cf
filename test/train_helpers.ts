// What the trainer's tests share: a tiny run (a 16-px ViT, batch 8, a 560-token vocabulary) and its metrics.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainOptions } from '../clip/train.ts';

export const TINY_CONFIG = { embedDim: 16, imageResolution: 16, visionLayers: 1, visionWidth: 32, visionPatchSize: 8, contextLength: 12, vocabSize: 0, transformerWidth: 32, transformerHeads: 1, transformerLayers: 1 };

/** Options for a tiny scenes run of `steps` steps into `out`, saving every 2 steps. */
export const tinyRun = (out: string, steps: number, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  config: TINY_CONFIG,
  batchSize: 8,
  steps,
  lr: 1e-3,
  weightDecay: 0.1,
  warmup: 2,
  seed: 3,
  out,
  evalEvery: 1000,
  saveEvery: 2,
  resume: false,
  clipGrad: 1,
  accumFreq: 1,
  vocabSize: 560,
  log: () => {},
  ...extra,
});

/** The records of a run's metrics.jsonl. */
export const metricsOf = (out: string): Record<string, number & unknown>[] =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
