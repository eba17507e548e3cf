// Training checkpoints on disk (Node-only); the format is nn/checkpoint.ts.
import { restoreCheckpoint, serializeCheckpoint, type CheckpointInfo, type HasState } from '../checkpoint.ts';
import type { Module } from '../module.ts';
import { writeFileAtomic } from '../../core/io/files.ts';
import { readSafetensors } from './safetensors.ts';

export type { CheckpointInfo } from '../checkpoint.ts';

/** Writes a checkpoint atomically. */
export async function saveCheckpoint(path: string, model: Module, optimizer: HasState | null, info: CheckpointInfo): Promise<void> {
  writeFileAtomic(path, await serializeCheckpoint(model, optimizer, info));
}

/** Restores model, optimizer and the default generator from a checkpoint file; returns the saved info. */
export function loadCheckpoint(path: string, model: Module, optimizer: HasState | null): CheckpointInfo {
  return restoreCheckpoint(readSafetensors(path), path, model, optimizer);
}
