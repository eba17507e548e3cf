// Training checkpoints: one safetensors file holding the model's state dict (under its own keys), the
// optimizer state (under `optimizer.`), and JSON metadata with the step, the optimizer step count, the RNG
// state and anything else the caller adds. On bytes here; nn/io/checkpoint.ts reads and writes files
// (atomically, so a crash mid-save keeps the previous one).
import * as T from '../ops/index.ts';
import type { Module } from './module.ts';
import { serializeSafetensors, toTensors, SafetensorsError, type SafetensorsFile } from './safetensors.ts';

/** What a checkpoint saves of an optimizer: its step count and state tensors by key (AdamW and SGD have it). */
export interface HasState {
  /** The step count and the state tensors by key (the tensors themselves, not copies). */
  stateDict(): { step: number; tensors: Map<string, T.Tensor> };
  /** Restores what stateDict() returned. */
  loadStateDict(s: { step: number; tensors: Map<string, T.Tensor> }): void;
}

/** What a checkpoint records besides the tensors: the step, the RNG state and the caller's own JSON. */
export interface CheckpointInfo {
  step: number;
  rng: { seed: number; counter: number };
  /** Caller-defined JSON (e.g. the data loader position, the config). */
  extra: Record<string, unknown>;
}

const OPT = 'optimizer.';

/** A checkpoint as safetensors bytes. */
export async function serializeCheckpoint(model: Module, optimizer: HasState | null, info: CheckpointInfo): Promise<Uint8Array> {
  const tensors: [string, T.Tensor][] = [...model.stateDict()];
  const opt = optimizer?.stateDict();
  if (opt) for (const [k, t] of opt.tensors) tensors.push([OPT + k, t]);
  return serializeSafetensors(tensors, {
    format: 'clipgpu-checkpoint',
    training: JSON.stringify({ ...info, optimizerStep: opt?.step ?? 0 }),
  });
}

/** What a parsed checkpoint says about its run (step, RNG, the caller's extra data), read before restoring it. */
export function checkpointInfo(file: SafetensorsFile, source: string): CheckpointInfo & { optimizerStep: number } {
  if (file.metadata.format !== 'clipgpu-checkpoint' || !file.metadata.training) {
    throw new SafetensorsError(`${source}: not a training checkpoint (no clipgpu-checkpoint metadata); load plain weights with loadStateDict`);
  }
  try {
    return JSON.parse(file.metadata.training) as CheckpointInfo & { optimizerStep: number };
  } catch (e) {
    throw new SafetensorsError(`${source}: training metadata is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * Restores model and optimizer in place from a parsed checkpoint (`source` names it in errors), and the
 * default generator's state; returns the saved info.
 */
export function restoreCheckpoint(file: SafetensorsFile, source: string, model: Module, optimizer: HasState | null): CheckpointInfo {
  const info = checkpointInfo(file, source);
  const tensors = toTensors(file);
  try {
    const modelPart = new Map([...tensors].filter(([k]) => !k.startsWith(OPT)));
    model.loadStateDict(modelPart);
    const optPart = new Map([...tensors].filter(([k]) => k.startsWith(OPT)).map(([k, t]) => [k.slice(OPT.length), t]));
    optimizer?.loadStateDict({ step: info.optimizerStep, tensors: optPart });
  } catch (e) {
    throw Object.assign(new SafetensorsError(`${source}: ${(e as Error).message}`), { cause: e });
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  T.defaultGenerator.seed = info.rng.seed;
  T.defaultGenerator.counter = info.rng.counter;
  return { step: info.step, rng: info.rng, extra: info.extra };
}

/**
 * Whether every value of `tensors` is finite, checked on the GPU with one readback: x·0 is 0 for a finite x and
 * NaN for ±Inf or NaN, so the sum of all x·0 is NaN exactly when some value is not finite.
 */
export async function allFinite(tensors: Iterable<T.Tensor>): Promise<boolean> {
  const list = [...tensors].filter((t) => t.dtype === 'f32' && t.size > 0);
  if (list.length === 0) return true;
  const flag = T.noGrad(() => T.tidy(() => list.map((t) => T.sum(T.mul(t, 0))).reduce((a, b) => T.add(a, b))));
  const value = await flag.item();
  flag.dispose();
  return Number.isFinite(value);
}
