// safetensors files on disk (Node-only): the format itself, on bytes, is nn/safetensors.ts.
import type * as T from '../../ops/index.ts';
import { SafetensorsError, parseSafetensors, serializeSafetensors, type SafetensorsFile } from '../safetensors.ts';
import { readBytes, writeFileAtomic } from '../../core/io/files.ts';

/** Reads a safetensors file from disk (host arrays; upload with toTensors). */
export function readSafetensors(path: string): SafetensorsFile {
  return parseSafetensors(readBytes(path, SafetensorsError), path);
}

/** Saves tensors as a safetensors file, atomically. */
export async function saveSafetensors(
  path: string,
  tensors: Map<string, T.Tensor> | [string, T.Tensor][],
  metadata: Record<string, string> = {},
): Promise<void> {
  writeFileAtomic(path, await serializeSafetensors(tensors, metadata));
}
