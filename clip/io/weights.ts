// CLIP weights and vocabularies on disk (Node-only); the formats are clip/weights.ts and clip/tokenizer.ts.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../core/io/files.ts';
import { readSafetensors } from '../../nn/io/safetensors.ts';
import { readTorchFile } from '../../nn/io/pytorch.ts';
import type { SafetensorsFile } from '../../nn/safetensors.ts';
import { ConfigError } from '../config.ts';
import type { CLIP } from '../model.ts';
import { OPENAI_VOCAB_SIZE, type Tokenizer } from '../tokenizer.ts';
import { clipFromSafetensors, serializeClip, type LoadOptions } from '../weights.ts';
import { readTokenizer } from './vocab.ts';

/**
 * A weights file's tensors: a PyTorch archive (.pt, .pth, .bin, or any file that is a zip: OpenAI's released
 * TorchScript files, torch.save'd state dicts and checkpoints, transformers' pytorch_model.bin) or safetensors.
 */
export function readWeights(path: string): SafetensorsFile {
  const torch = /\.(pt|pth|bin)$/i.test(path) || isZip(path);
  return torch ? readTorchFile(path) : readSafetensors(path);
}

/** Whether the file starts with a zip member's signature (safetensors cannot: its first 8 bytes are a length). */
function isZip(path: string): boolean {
  try {
    const fd = openSync(path, 'r');
    try {
      const head = new Uint8Array(4);
      return readSync(fd, head, 0, 4, 0) === 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // unreadable: readSafetensors says why
  }
}

/** Builds a CLIP from a weights file alone (see clipFromSafetensors). */
export function loadClip(path: string, options: LoadOptions = {}): CLIP {
  return clipFromSafetensors(readWeights(path), path, options);
}

/** Saves the model in OpenAI's layout with its config and prompts in the metadata, atomically. */
export async function saveClip(path: string, model: CLIP): Promise<void> {
  writeFileAtomic(path, await serializeClip(model));
}

/**
 * The tokenizer for a weights file: `vocab` when given (it must exist), else the vocab.txt.gz that training
 * leaves beside the weights, else CLIP's own vocabulary (for OpenAI and open_clip weights).
 */
export function tokenizerFor(weightsPath: string, vocabSize: number, vocab?: string): Tokenizer {
  if (vocab !== undefined) return readTokenizer(vocab, vocabSize);
  const beside = join(dirname(weightsPath), 'vocab.txt.gz');
  if (existsSync(beside)) return readTokenizer(beside, vocabSize);
  if (vocabSize !== OPENAI_VOCAB_SIZE) {
    throw new ConfigError(
      `${weightsPath}: its ${vocabSize}-token vocabulary is not CLIP's (${OPENAI_VOCAB_SIZE}) and there is no vocab.txt.gz beside it: ` +
        "pass the run's vocabulary with --vocab",
    );
  }
  return readTokenizer();
}
