// User data: image–caption pairs from a CSV/TSV file (columns `filepath` and `caption`, as open_clip's
// --csv-img-key / --csv-caption-key defaults), a folder of images with a .txt caption beside each, or
// webdataset .tar shards (image + .txt members sharing a key).
// Rows that cannot be used are reported with their line and reason and skipped, never silently dropped;
// images that fail to decode at training time are reported with their path, counted, and replaced.
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { readBytes } from '../../core/io/files.ts';
import { readImage } from '../io/images.ts';
import { mulberry32 } from '../../core/random.ts';
import { DEFAULT_IMAGE_LIMITS, ImageError, decodeImage, preprocess, randomResizedCrop, type ImageLimits } from '../preprocess.ts';
import type { DataSource } from './source.ts';

export interface Pair {
  /** Where the image comes from (a path, or `shard.tar:member` for webdataset members). */
  image: string;
  caption: string;
  /** Reads the encoded image (absent: read the file at `image`). */
  read?: () => Uint8Array;
}

export interface Listing {
  pairs: Pair[];
  /** Rows or files skipped, with the reason. */
  skipped: string[];
}

/** A CSV/TSV field longer than this is no file path or caption (captions are cut to the context length anyway). */
export const MAX_FIELD_CHARS = 1 << 16;
/** Linux's PATH_MAX: a longer file path (or tar member name) cannot name a file. */
const MAX_PATH_CHARS = 4096;

/**
 * The records of a CSV/TSV text as spreadsheets write it (RFC 4180): fields in double quotes may hold the
 * separator, newlines and doubled quotes; CRLF or LF line ends; a UTF-8 byte-order mark is ignored. Each record
 * comes with the line it starts on; a record with a field over MAX_FIELD_CHARS keeps only its first characters
 * and says which field (`overlong`, 0-based), so memory stays bounded. A quote that is never closed is an
 * error naming `source` and the line it opened on.
 */
export function parseDelimited(text: string, sep: string, source = 'text'): { line: number; fields: string[]; overlong?: number }[] {
  const records: { line: number; fields: string[]; overlong?: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let overlong: number | undefined;
  let quoted = false;
  let quoteLine = 0;
  let line = 1;
  let start = 1;
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const add = (ch: string) => {
    if (field.length < MAX_FIELD_CHARS) field += ch;
    else overlong ??= fields.length;
  };
  const endRecord = () => {
    fields.push(field);
    if (fields.length > 1 || fields[0] !== '') records.push({ line: start, fields, ...(overlong === undefined ? {} : { overlong }) });
    fields = [];
    field = '';
    overlong = undefined;
  };
  for (let i = 0; i < src.length; i++) {
    const ch = src[i];
    if (ch === '\n') line++;
    if (quoted) {
      if (ch === '"' && src[i + 1] === '"') add(src[i++]);
      else if (ch === '"') quoted = false;
      else add(ch);
    } else if (ch === '"' && field === '') {
      quoted = true;
      quoteLine = line;
    } else if (ch === sep) {
      fields.push(field);
      field = '';
    } else if (ch === '\n' || (ch === '\r' && src[i + 1] === '\n')) {
      if (ch === '\r') i++, line++;
      endRecord();
      start = line;
    } else add(ch);
  }
  if (quoted) throw new Error(`${source}:${quoteLine}: a quoted field opens on this line and is never closed (the rest of the file would be one field)`);
  if (field !== '' || fields.length) endRecord();
  return records;
}

/** What may be read of user data: image limits, and whether listed paths may leave the dataset's folder. */
export interface DataLimits extends ImageLimits {
  /** Read paths in a CSV that resolve outside the CSV's folder (absolute paths, `..`). */
  allowOutside: boolean;
}

export const DEFAULT_DATA_LIMITS: DataLimits = { ...DEFAULT_IMAGE_LIMITS, allowOutside: false };

/** Whether `path` (a real path) lies in the folder `root` (a real path). */
const isInside = (path: string, root: string) => {
  const inside = relative(root, path);
  return inside === '' || !(inside === '..' || inside.startsWith(`..${sep}`) || isAbsolute(inside));
};

/**
 * Why the image at `path` (listed by the dataset whose folder's real path is `root`) cannot be used, or null
 * when it can. Where it lies is judged by its real path: a symlink in the dataset that leads out of it is
 * outside.
 */
function imageProblem(path: string, root: string, limits: DataLimits): string | null {
  const outside = (real: string) =>
    `image ${path}${real === resolve(path) ? '' : ` (a link to ${real})`} is outside the dataset folder ${root} ` +
    '(allow with --allow-outside-paths)';
  if (!limits.allowOutside && !isInside(resolve(path), root)) return outside(resolve(path));
  if (!existsSync(path)) return `image ${path} does not exist`;
  const real = realpathSync(path);
  if (!limits.allowOutside && !isInside(real, root)) return outside(real);
  const stat = statSync(real);
  if (!stat.isFile()) return `image ${path} is not a regular file`;
  if (stat.size > limits.maxBytes) return `image ${path} is ${stat.size} bytes, over the limit of ${limits.maxBytes} (raise it with --max-image-bytes)`;
  return null;
}

export function readCsv(path: string, { imageKey = 'filepath', captionKey = 'caption', limits = DEFAULT_DATA_LIMITS } = {}): Listing {
  const text = new TextDecoder().decode(readBytes(path, Error, 1 << 30));
  const sep = extname(path).toLowerCase() === '.tsv' ? '\t' : ',';
  const [head, ...rows] = parseDelimited(text, sep, path);
  const header = (head?.fields ?? []).map((h) => h.trim());
  const [ic, cc] = [header.indexOf(imageKey), header.indexOf(captionKey)];
  if (ic < 0 || cc < 0) {
    const found = JSON.stringify(header.slice(0, 8).map((h) => (h.length > 40 ? `${h.slice(0, 40)}…` : h)));
    const more = header.length > 8 ? ` and ${header.length - 8} more` : '';
    throw new Error(`${path}: header must name columns '${imageKey}' and '${captionKey}', found ${found}${more}`);
  }
  const root = realpathSync(dirname(resolve(path)));
  const pairs: Pair[] = [];
  const skipped: string[] = [];
  for (const { line, fields, overlong } of rows) {
    const where = `${path}:${line}`;
    if (overlong !== undefined) {
      skipped.push(`${where}: field ${overlong + 1} is over ${MAX_FIELD_CHARS} characters`);
      continue;
    }
    if (fields.length !== header.length) {
      skipped.push(`${where}: ${fields.length} fields, header has ${header.length}`);
      continue;
    }
    if (fields[ic].length > MAX_PATH_CHARS) {
      skipped.push(`${where}: the ${imageKey} field is ${fields[ic].length} characters long, longer than any path`);
      continue;
    }
    const image = resolve(root, fields[ic]);
    const caption = fields[cc].trim();
    const problem = caption ? imageProblem(image, root, limits) : 'empty caption';
    if (problem) skipped.push(`${where}: ${problem}`);
    else pairs.push({ image, caption });
  }
  return { pairs, skipped };
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/**
 * Every image under `dir` (recursively) that has a caption file with the same name and .txt. Folder links are
 * followed only while they stay in the dataset (or anywhere with allowOutside), each real folder once (a
 * link loop is walked once); a folder that cannot be read is skipped with its reason.
 */
export function readFolder(dir: string, limits: DataLimits = DEFAULT_DATA_LIMITS): Listing {
  const pairs: Pair[] = [];
  const skipped: string[] = [];
  const root = realpathSync(resolve(dir));
  const walked = new Set<string>();
  const walk = (d: string) => {
    const real = realpathSync(d);
    if (walked.has(real)) return;
    walked.add(real);
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch (e) {
      skipped.push(`${d}: cannot read the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return;
    }
    for (const name of names) {
      const path = join(d, name);
      let isFolder: boolean;
      try {
        isFolder = statSync(path).isDirectory();
      } catch (e) {
        skipped.push(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'a broken link' : `cannot read (${(e as NodeJS.ErrnoException).code})`}`);
        continue;
      }
      if (isFolder) {
        const target = realpathSync(path);
        if (!limits.allowOutside && !isInside(target, root)) {
          skipped.push(`${path}: a link to ${target}, outside the dataset folder ${root} (allow with --allow-outside-paths)`);
        } else walk(path);
      } else if (IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) {
        const captionPath = join(d, `${basename(name, extname(name))}.txt`);
        if (!existsSync(captionPath)) {
          skipped.push(`${path}: no caption file ${captionPath}`);
          continue;
        }
        const captionReal = realpathSync(captionPath);
        if (!limits.allowOutside && !isInside(captionReal, root)) {
          skipped.push(`${captionPath}: a link to ${captionReal}, outside the dataset folder ${root} (allow with --allow-outside-paths)`);
          continue;
        }
        let caption: string;
        try {
          caption = new TextDecoder().decode(readBytes(captionPath, Error, MAX_CAPTION_BYTES)).trim();
        } catch (e) {
          skipped.push((e as Error).message);
          continue;
        }
        const problem = caption ? imageProblem(path, root, limits) : `${captionPath}: empty caption`;
        if (problem) skipped.push(caption ? `${path}: ${problem}` : problem);
        else pairs.push({ image: path, caption });
      }
    }
  };
  walk(root);
  return { pairs, skipped };
}

/** A caption longer than this is not a caption (and would only be truncated to the context length). */
const MAX_CAPTION_BYTES = 1 << 20;

/** More shards than this in one brace range is a typo, not a dataset (each one is listed before training). */
export const MAX_SHARDS = 100_000;

/** `a-{000..002}.tar` → a-000.tar, a-001.tar, a-002.tar (webdataset's shard notation); other paths as they are. */
export function expandShards(pattern: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(pattern);
  if (!m) return [pattern];
  const [from, to] = [Number(m[1]), Number(m[2])];
  if (to < from) throw new Error(`${pattern}: the range {${m[1]}..${m[2]}} is empty (it counts up)`);
  if (to - from + 1 > MAX_SHARDS) throw new Error(`${pattern}: {${m[1]}..${m[2]}} names ${to - from + 1} shards, over the limit of ${MAX_SHARDS}`);
  return Array.from({ length: to - from + 1 }, (_, i) => pattern.replace(m[0], String(from + i).padStart(m[1].length, '0')));
}

/**
 * webdataset shards: tar files whose members are grouped by key (the name up to the first dot after the last
 * slash), each group an image (.jpg/.jpeg/.png) and a caption (.txt). Only the 512-byte headers are read up
 * front; images are read from their offset when a batch needs them.
 */
export function readShards(pattern: string, limits: DataLimits = DEFAULT_DATA_LIMITS): Listing {
  const pairs: Pair[] = [];
  const skipped: string[] = [];
  for (const shard of expandShards(pattern)) {
    if (!existsSync(shard)) {
      skipped.push(`${shard}: shard does not exist`);
      continue;
    }
    const fd = openSync(shard, 'r');
    const size = fstatSync(fd).size;
    const groups = new Map<string, { image?: { name: string; offset: number; size: number }; caption?: string }>();
    const header = new Uint8Array(512);
    const read = (length: number, position: number) => {
      const bytes = new Uint8Array(length);
      readSync(fd, bytes, 0, length, position);
      return bytes;
    };
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).replace(/\0.*$/s, '');
    // A GNU long name ('L') or a pax header ('x', Python's tarfile default) names the member that follows.
    let longName: string | null = null;
    let skipNext = false; // the member named by an over-long name
    let at = 0;
    while (at + 512 <= size) {
      readSync(fd, header, 0, 512, at);
      if (header.every((b) => b === 0)) break; // end-of-archive blocks
      const field = (from: number, len: number) => text(header.subarray(from, from + len));
      const prefix = field(345, 155);
      const name = longName ?? (prefix ? `${prefix}/` : '') + field(0, 100);
      const length = parseInt(field(124, 12).trim() || '0', 8);
      const type = String.fromCharCode(header[156] || 48);
      if (!Number.isFinite(length) || at + 512 + length > size) {
        skipped.push(`${shard}: member '${name}' at byte ${at} runs past the end of the file (truncated shard)`);
        break;
      }
      const data = at + 512;
      at = data + Math.ceil(length / 512) * 512;
      if (type === 'L' || type === 'x') {
        const content = length <= MAX_CAPTION_BYTES ? text(read(length, data)) : '';
        longName = type === 'L' ? content : (/(?:^|\n)\d+ path=([^\n]*)\n/.exec(content)?.[1] ?? null);
        if (longName !== null && longName.length > MAX_PATH_CHARS) {
          skipped.push(`${shard}: the member after byte ${at} has a ${longName.length}-character name, longer than any path`);
          [longName, skipNext] = [null, true];
        }
        continue;
      }
      longName = null;
      if (skipNext) {
        skipNext = false;
        continue;
      }
      if (type !== '0' && type !== '7') continue; // directories, links, global headers
      const slash = name.lastIndexOf('/');
      const dot = name.indexOf('.', slash + 1);
      const key = dot < 0 ? name : name.slice(0, dot);
      const ext = dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
      const group = groups.get(key) ?? {};
      if (ext === 'txt') {
        if (length > MAX_CAPTION_BYTES) skipped.push(`${shard}:${name}: a ${length}-byte caption`);
        else group.caption = new TextDecoder().decode(read(length, data)).trim();
      } else if (IMAGE_EXTENSIONS.has(`.${ext}`)) {
        if (length > limits.maxBytes) skipped.push(`${shard}:${name}: ${length} bytes, over the limit of ${limits.maxBytes} (raise it with --max-image-bytes)`);
        else group.image = { name, offset: data, size: length };
      }
      groups.set(key, group);
    }
    closeSync(fd);
    for (const [key, g] of groups) {
      if (!g.image) skipped.push(`${shard}:${key}: no image member`);
      else if (!g.caption) skipped.push(`${shard}:${key}: no caption (.txt) member`);
      else {
        const { offset, size: bytes, name } = g.image;
        pairs.push({
          image: `${shard}:${name}`,
          caption: g.caption,
          read: () => {
            const f = openSync(shard, 'r');
            try {
              const buf = new Uint8Array(bytes);
              readSync(f, buf, 0, bytes, offset);
              return buf;
            } finally {
              closeSync(f);
            }
          },
        });
      }
    }
  }
  return { pairs, skipped };
}

/** A CSV/TSV file, a folder, or webdataset .tar shards, by what the path is. */
export function readPairs(path: string, limits: DataLimits = DEFAULT_DATA_LIMITS): Listing {
  if (/\.tar$/i.test(path)) return readShards(path, limits);
  if (!existsSync(path)) throw new Error(`${path}: no such file or folder`);
  return statSync(path).isDirectory() ? readFolder(path, limits) : readCsv(path, { limits });
}

/** Decodes and prepares one pair, or reports why it cannot be used. */
export function loadPair(pair: Pair, n: number, train: boolean, random: () => number, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Float32Array | ImageError {
  try {
    const img = pair.read ? decodeImage(pair.read(), pair.image, limits.maxPixels) : readImage(pair.image, limits);
    return train ? randomResizedCrop(img, n, random) : preprocess(img, n);
  } catch (e) {
    return e instanceof ImageError ? e : new ImageError(`${pair.image}: ${(e as Error).message}`);
  }
}

/**
 * Image–caption pairs as a training data source: a seeded shuffle per epoch, RandomResizedCrop for training, the
 * last 10% (at most 500) kept for validation. An image that fails to decode is reported once, counted, and
 * replaced by the next example in the shuffled order; validation uses the pairs that decode.
 */
export function fileSource(
  pairs: Pair[],
  seed: number,
  log: (line: string) => void,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
): DataSource & { failures: () => number } {
  if (pairs.length < 2) throw new Error(`training data: need at least 2 usable image–caption pairs, found ${pairs.length}`);
  const valCount = Math.max(1, Math.min(500, Math.floor(pairs.length / 10)));
  const train = pairs.slice(0, pairs.length - valCount);
  const val = pairs.slice(pairs.length - valCount);
  const reported = new Set<string>();
  let failures = 0;
  let epochOrder: { epoch: number; order: number[] } = { epoch: -1, order: [] };
  const orderOf = (epoch: number) => {
    if (epochOrder.epoch !== epoch) {
      const r = mulberry32(seed * 7919 + epoch);
      const order = train.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(r() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      epochOrder = { epoch, order };
    }
    return epochOrder.order;
  };
  /** The prepared image of a pair, or null (reported once, counted) when it cannot be decoded. */
  const prepare = (pair: Pair, n: number, augment: boolean, random: () => number) => {
    const result = loadPair(pair, n, augment, random, limits);
    if (!(result instanceof Error)) return result;
    failures++;
    if (!reported.has(pair.image)) {
      reported.add(pair.image);
      log(`skipping unreadable image: ${result.message}`);
    }
    return null;
  };
  const batch = (start: number, size: number, n: number) => {
    const pixels = new Float32Array(size * 3 * n * n);
    const captions: string[] = [];
    for (let i = 0; i < size; i++) {
      const e = start + i;
      const at = orderOf(Math.floor(e / train.length))[e % train.length];
      for (let k = 0; ; k++) {
        if (k >= train.length) throw new Error('training data: no training image could be decoded');
        const pair = train[(at + k) % train.length];
        const image = prepare(pair, n, true, mulberry32(seed + e));
        if (!image) continue;
        pixels.set(image, i * 3 * n * n);
        captions.push(pair.caption);
        break;
      }
    }
    return { pixels, captions };
  };
  const validation = (count: number, n: number) => {
    const images: Float32Array[] = [];
    const captions: string[] = [];
    for (const pair of val) {
      if (images.length >= count) break;
      const image = prepare(pair, n, false, mulberry32(seed));
      if (!image) continue;
      images.push(image);
      captions.push(pair.caption);
    }
    const pixels = new Float32Array(images.length * 3 * n * n);
    images.forEach((image, i) => pixels.set(image, i * 3 * n * n));
    return { pixels, captions };
  };
  return { batch, validation, corpus: (count) => train.slice(0, count).map((p) => p.caption), failures: () => failures };
}
