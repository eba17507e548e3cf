// BPE vocabularies on disk (Node-only); the format is clip/tokenizer.ts, on bytes.
import { readBytes, writeFileAtomic } from '../../core/io/files.ts';
import { DEFAULT_VOCAB, OPENAI_VOCAB_SIZE, Tokenizer, TokenizerError, bpeBytes } from '../tokenizer.ts';

/** The tokenizer of a gzipped BPE file (CLIP's own vocabulary by default). */
export function readTokenizer(path: string | URL = DEFAULT_VOCAB, vocabSize = OPENAI_VOCAB_SIZE): Tokenizer {
  return Tokenizer.fromBytes(readBytes(path, TokenizerError), vocabSize, String(path));
}

/** Writes merges in the CLIP vocabulary format, atomically. */
export function saveBpe(path: string, merges: readonly string[]): void {
  writeFileAtomic(path, bpeBytes(merges));
}
