// The PyTorch peer (bench/torch_clip_step.py): the same CLIP in PyTorch on the CPU, run as a child process by
// the train-step and full-size suites when python3 with torch is installed — a one-off peer; nothing in the
// project needs Python.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { visionHeads, type ClipConfig } from '../clip/config.ts';

/**
 * The peer's script, found from this module as the vocabulary is from the tokenizer (../bench from a bundle in
 * the repository's .build/, beside this module in the package, where the build copies it).
 */
const TORCH_STEP = fileURLToPath(new URL('../bench/torch_clip_step.py', import.meta.url));

/** What one run of the peer printed: the mean of its timed steps and its first (untimed) step. */
export interface TorchRun {
  impl: string;
  ms_per_step: number;
  images_per_s: number;
  first_step_ms: number;
}

/** How the peer runs: a training step or encode_image alone, and how many steps after the first. */
export interface TorchOptions {
  mode?: 'train' | 'infer';
  /** Timed steps (the script's default 30). */
  steps?: number;
  /** Untimed steps after the first (the script's default 3). */
  warmup?: number;
}

let python: string | null | undefined;

/** $PYTHON, else the first python3 that has torch (a pyenv shim may shadow Debian's /usr/bin/python3); null when none has it. */
export function torchPython(): string | null {
  python ??= [process.env.PYTHON, 'python3', '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch']).status === 0) ?? null;
  return python;
}

/** One run of the peer on 2 threads with `config`'s architecture (vocabulary `vocab`) at `batch`; null without torch. */
export function runTorch(config: ClipConfig, vocab: number, batch: number, { mode, steps, warmup }: TorchOptions = {}): TorchRun | null {
  const py = torchPython();
  if (!py) return null;
  const args = [TORCH_STEP, '--threads', '2', '--batch', String(batch), '--res', String(config.imageResolution), '--patch', String(config.visionPatchSize),
    '--width', String(config.visionWidth), '--heads', String(visionHeads(config)), '--layers', String(config.visionLayers),
    '--embed', String(config.embedDim), '--text-width', String(config.transformerWidth),
    '--text-heads', String(config.transformerHeads), '--text-layers', String(config.transformerLayers),
    '--context', String(config.contextLength), '--vocab', String(vocab)];
  if (mode) args.push('--mode', mode);
  if (steps !== undefined) args.push('--steps', String(steps));
  if (warmup !== undefined) args.push('--warmup', String(warmup));
  const run = spawnSync(py, args, { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`${TORCH_STEP} failed:\n${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!);
}
