// PyTorch .pt files on disk (Node-only): the format itself, on bytes, is nn/pytorch.ts.
import { readBytes } from '../../core/io/files.ts';
import type { SafetensorsFile } from '../safetensors.ts';
import { TorchFileError, parseTorchFile } from '../pytorch.ts';

/** Reads a PyTorch zip archive (state dict, checkpoint or TorchScript module) from disk as host tensors. */
export function readTorchFile(path: string): SafetensorsFile {
  return parseTorchFile(readBytes(path, TorchFileError), path);
}
