// The CLIP tokenizer: OpenAI's simple_tokenizer (byte-level BPE over a lower-cased, cleaned text), with
// open_clip's truncation (keep the end-of-text token last), decoding, and training a vocabulary of a chosen
// size on a caption corpus (saved in the same file format, loaded by the same class).
import { decodeHTML } from 'entities';
import { gunzipSync, gzipSync } from 'fflate';
import { fixMojibake } from './mojibake.ts';

/**
 * The real CLIP vocabulary, shipped with the project. '../clip/…' resolves the same from clip/ (sources) and
 * from .build/ (bundles made by scripts/run.mjs); a page serves it at the same place beside its bundle.
 */
export const DEFAULT_VOCAB = new URL('../clip/assets/bpe_simple_vocab_16e6.txt.gz', import.meta.url);
/** CLIP's vocabulary: 512 byte symbols, 48,894 merges and the two special tokens. */
export const OPENAI_VOCAB_SIZE = 49408;

/** Text that cannot be tokenized as asked (too long without truncation) or a vocabulary file that is not one. */
export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);

/** GPT-2's reversible byte → printable-character table: 188 bytes map to themselves, the rest to U+0100…. */
function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : 256 + n++);
  return table;
}

/** The byte characters in vocabulary order: the printable bytes first, then the others (Python's dict order). */
const VOCAB_BYTES = [...Array(256).keys()].sort((a, b) => Number(printable(b)) - Number(printable(a)) || a - b);

// Python's str.isspace() characters, for strip(); the regexes use Unicode White_Space as the `regex` module does.
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu');
const WHITESPACE_RUN = /\p{White_Space}+/gu;
const PRETOKENIZE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

// ftfy's chardata.LIGATURES: Latin typographic ligatures and the digraphs kept for legacy encodings.
const LIGATURES: Record<string, string> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn',
  'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj',
  'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};

/**
 * ftfy.fix_text (which OpenAI's basic_clean calls), its steps in its order: mojibake repaired
 * (clip/mojibake.ts), Latin ligatures split, half- and full-width forms to their usual width (NFKC of
 * U+FF01–U+FFEF, and U+3000 to a space), curly quotes straightened, control characters dropped, NFC. Not done:
 * ftfy's own HTML unescaping (basic_clean unescapes twice after it, as cleanText does) and line-break
 * normalisation (whitespace is collapsed after it).
 */
export function fixText(text: string): string {
  return fixMojibake(text)
    .replace(/[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g, (c) => LIGATURES[c] ?? c)
    .replace(/[\uff01-\uffef]/g, (c) => c.normalize('NFKC'))
    .replace(/\u3000/g, ' ')
    .replace(/[\u02bc\u2018-\u201b]/g, "'")
    .replace(/[\u201c-\u201f]/g, '"')
    .replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '')
    .normalize('NFC');
}

/** OpenAI's basic_clean + whitespace_clean + lower(). */
export function cleanText(text: string): string {
  const unescaped = decodeHTML(decodeHTML(fixText(text))).replace(STRIP, '');
  return unescaped.replace(WHITESPACE_RUN, ' ').replace(STRIP, '').toLowerCase();
}

/** The context length and what to do with texts longer than it. */
export interface TokenizeOptions {
  /** Tokens per text, start and end tokens included (CLIP: 77). */
  contextLength?: number;
  /** Cut long texts keeping the end-of-text token last (default), or throw a TokenizerError. */
  truncate?: boolean;
}

/** OpenAI CLIP's byte-level BPE: ids identical to the reference for any script; build it with Tokenizer.fromBytes. */
export class Tokenizer {
  readonly byteEncoder = bytesToUnicode();
  readonly byteDecoder = new Map(this.byteEncoder.map((c, b) => [c, b]));
  readonly encoder = new Map<string, number>();
  readonly decoder: string[];
  readonly ranks = new Map<string, number>();
  readonly sot: number;
  readonly eot: number;
  private cache = new Map<string, string[]>();

  /** From merge lines (the vocabulary file's lines after the version header). */
  constructor(readonly merges: readonly string[]) {
    const bytes = VOCAB_BYTES.map((b) => this.byteEncoder[b]);
    const vocab = [...bytes, ...bytes.map((c) => `${c}</w>`)];
    merges.forEach((line, i) => {
      const [a, b] = line.split(' ');
      this.ranks.set(`${a} ${b}`, i);
      vocab.push(a + b);
    });
    vocab.push('<|startoftext|>', '<|endoftext|>');
    vocab.forEach((v, i) => this.encoder.set(v, i));
    this.decoder = vocab;
    this.sot = vocab.length - 2;
    this.eot = vocab.length - 1;
  }

  /**
   * A tokenizer from the bytes of a gzipped BPE file (`source` names it in errors); uses at most
   * vocabSize − 514 merges (OpenAI's file holds more than CLIP uses).
   */
  static fromBytes(bytes: Uint8Array, vocabSize = OPENAI_VOCAB_SIZE, source = 'vocabulary'): Tokenizer {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(gunzipSync(bytes));
    } catch (e) {
      throw new TokenizerError(`${source}: not a gzipped BPE vocabulary (${(e as Error).message})`);
    }
    const lines = text.split('\n');
    if (!lines[0].includes('#version')) throw new TokenizerError(`${source}: missing the '#version' header of a BPE merges file`);
    const merges = lines.slice(1, 1 + vocabSize - 2 * 256 - 2).filter((l) => l.length > 0);
    return new Tokenizer(merges);
  }

  get vocabSize(): number {
    return this.decoder.length;
  }

  /** Byte-pair merges of one pre-token (already mapped to byte characters), lowest rank first. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = [...token];
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
      }
      if (best < 0) break;
      const [first, second] = [word[best], word[best + 1]];
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else merged.push(word[i++]);
      }
      word = merged;
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }

  /** Pre-tokens of a cleaned text, each as byte characters. */
  preTokens(text: string): string[] {
    return (cleanText(text).match(PRETOKENIZE) ?? []).map((t) => Array.from(new TextEncoder().encode(t), (b) => this.byteEncoder[b]).join(''));
  }

  /** BPE ids of a text, without start/end tokens. */
  encode(text: string): number[] {
    return this.preTokens(text).flatMap((p) => this.bpe(p).map((s) => this.encoder.get(s)!));
  }

  /** Text of ids; a padded row decodes up to its end-of-text token. */
  decode(ids: Iterable<number>): string {
    const list = [...ids];
    const end = list.indexOf(this.eot);
    const text = (end >= 0 ? list.slice(0, end) : list).filter((i) => i !== this.sot).map((i) => this.decoder[i] ?? '').join('');
    const bytes = Uint8Array.from([...text.replace(/<\/w>/g, ' ')].flatMap((c) => (c === ' ' ? [0x20] : [this.byteDecoder.get(c) ?? 0x3f])));
    return new TextDecoder('utf-8').decode(bytes).trim();
  }

  /** Ids [texts.length, contextLength] (i32, zero padded): start, BPE ids, end. */
  tokenize(texts: string | readonly string[], { contextLength = 77, truncate = true }: TokenizeOptions = {}): Int32Array {
    const list = typeof texts === 'string' ? [texts] : texts;
    const out = new Int32Array(list.length * contextLength);
    list.forEach((text, i) => {
      let ids = [this.sot, ...this.encode(text), this.eot];
      if (ids.length > contextLength) {
        if (!truncate) {
          throw new TokenizerError(
            `text ${i} is ${ids.length} tokens, more than the context length ${contextLength}: ` +
              `"${text.slice(0, 60)}${text.length > 60 ? '…' : ''}"`,
          );
        }
        ids = [...ids.slice(0, contextLength - 1), this.eot];
      }
      out.set(ids, i * contextLength);
    });
    return out;
  }
}

/**
 * Learns BPE merges on a corpus (the same cleaning and pre-tokenisation as encoding) until the vocabulary has
 * `vocabSize` entries: 512 byte symbols, the merges, and the two special tokens. Ties break by first pair seen.
 */
export function trainBpe(corpus: Iterable<string>, vocabSize: number): string[] {
  const numMerges = vocabSize - 2 * 256 - 2;
  if (numMerges < 0) throw new TokenizerError(`trainBpe: vocabSize ${vocabSize} is below the 514 byte and special tokens`);
  const base = new Tokenizer([]);
  const counts = new Map<string, number>();
  for (const text of corpus) for (const p of base.preTokens(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const words = [...counts].map(([w, n]) => {
    const chars = [...w];
    return { symbols: [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`], n };
  });
  const merges: string[] = [];
  while (merges.length < numMerges) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) for (let i = 0; i < symbols.length - 1; i++) {
      const key = `${symbols[i]} ${symbols[i + 1]}`;
      pairs.set(key, (pairs.get(key) ?? 0) + n);
    }
    let best: string | null = null;
    let bestCount = 1; // a pair seen once compresses nothing worth a vocabulary slot
    for (const [k, c] of pairs) if (c > bestCount) [best, bestCount] = [k, c];
    if (!best) break;
    merges.push(best);
    const [a, b] = best.split(' ');
    for (const w of words) {
      const merged: string[] = [];
      for (let i = 0; i < w.symbols.length; ) {
        if (i < w.symbols.length - 1 && w.symbols[i] === a && w.symbols[i + 1] === b) {
          merged.push(a + b);
          i += 2;
        } else merged.push(w.symbols[i++]);
      }
      w.symbols = merged;
    }
  }
  return merges;
}

/** Merges in the CLIP vocabulary format: gzipped text with a '#version: 0.2' header. */
export function bpeBytes(merges: readonly string[]): Uint8Array {
  return gzipSync(new TextEncoder().encode(['#version: 0.2', ...merges, ''].join('\n')));
}
