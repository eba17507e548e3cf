// User data: image–caption pairs from a CSV/TSV file (columns `filepath` and `caption`, as open_clip's
// --csv-img-key / --csv-caption-key defaults), a folder of images with a .txt caption beside each, or
// webdataset .tar shards (image + .txt members sharing a key).
// Rows that cannot be used are reported with their line and reason and skipped, never silently dropped;
// images that fail to decode at training time are reported with their path, counted, and replaced.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { readImage } from '../io/images.ts';
import { mulberry32 } from '../../core/random.ts';
import { ImageError, decodeImage, preprocess, randomResizedCrop } from '../preprocess.ts';
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

/** Splits one CSV/TSV line, honouring double quotes ("" inside quotes is a quote). */
function splitRow(line: string, sep: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') field += line[i++];
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === sep) {
      out.push(field);
      field = '';
    } else field += ch;
  }
  out.push(field);
  return out;
}

export function readCsv(path: string, { imageKey = 'filepath', captionKey = 'caption' } = {}): Listing {
  const text = readFileSync(path, 'utf8');
  const sep = extname(path).toLowerCase() === '.tsv' ? '\t' : ',';
  const lines = text.split(/\r?\n/);
  const header = splitRow(lines[0] ?? '', sep);
  const [ic, cc] = [header.indexOf(imageKey), header.indexOf(captionKey)];
  if (ic < 0 || cc < 0) throw new Error(`${path}: header must name columns '${imageKey}' and '${captionKey}', found ${JSON.stringify(header)}`);
  const pairs: Pair[] = [];
  const skipped: string[] = [];
  lines.slice(1).forEach((line, i) => {
    if (!line.trim()) return;
    const row = splitRow(line, sep);
    const where = `${path}:${i + 2}`;
    if (row.length !== header.length) return skipped.push(`${where}: ${row.length} fields, header has ${header.length}`);
    const image = resolve(dirname(path), row[ic]);
    if (!row[cc].trim()) return skipped.push(`${where}: empty caption`);
    if (!existsSync(image)) return skipped.push(`${where}: image ${image} does not exist`);
    pairs.push({ image, caption: row[cc] });
  });
  return { pairs, skipped };
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/** Every image under `dir` (recursively) that has a caption file with the same name and .txt. */
export function readFolder(dir: string): Listing {
  const pairs: Pair[] = [];
  const skipped: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) {
        const captionPath = join(d, `${basename(name, extname(name))}.txt`);
        if (!existsSync(captionPath)) skipped.push(`${path}: no caption file ${captionPath}`);
        else {
          const caption = readFileSync(captionPath, 'utf8').trim();
          if (caption) pairs.push({ image: path, caption });
          else skipped.push(`${captionPath}: empty caption`);
        }
      }
    }
  };
  walk(dir);
  return { pairs, skipped };
}

/** `a-{000..002}.tar` → a-000.tar, a-001.tar, a-002.tar (webdataset's shard notation); other paths as they are. */
export function expandShards(pattern: string): string[] {
  const m = /\{(\d+)\.\.(\d+)\}/.exec(pattern);
  if (!m) return [pattern];
  const [from, to] = [Number(m[1]), Number(m[2])];
  return Array.from({ length: to - from + 1 }, (_, i) => pattern.replace(m[0], String(from + i).padStart(m[1].length, '0')));
}

/**
 * webdataset shards: tar files whose members are grouped by key (the name up to the first dot after the last
 * slash), each group an image (.jpg/.jpeg/.png) and a caption (.txt). Only the 512-byte headers are read up
 * front; images are read from their offset when a batch needs them.
 */
export function readShards(pattern: string): Listing {
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
    const header = Buffer.alloc(512);
    let at = 0;
    while (at + 512 <= size) {
      readSync(fd, header, 0, 512, at);
      if (header.every((b) => b === 0)) break; // end-of-archive blocks
      const field = (from: number, len: number) => header.subarray(from, from + len).toString('utf8').replace(/\0.*$/s, '');
      const prefix = field(345, 155);
      const name = (prefix ? `${prefix}/` : '') + field(0, 100);
      const length = parseInt(field(124, 12).trim() || '0', 8);
      const type = String.fromCharCode(header[156] || 48);
      if (!Number.isFinite(length) || at + 512 + length > size) {
        skipped.push(`${shard}: member '${name}' at byte ${at} runs past the end of the file (truncated shard)`);
        break;
      }
      if (type === '0') {
        const slash = name.lastIndexOf('/');
        const dot = name.indexOf('.', slash + 1);
        const key = dot < 0 ? name : name.slice(0, dot);
        const ext = dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
        const group = groups.get(key) ?? {};
        if (ext === 'txt') {
          const bytes = Buffer.alloc(length);
          readSync(fd, bytes, 0, length, at + 512);
          group.caption = bytes.toString('utf8').trim();
        } else if (IMAGE_EXTENSIONS.has(`.${ext}`)) group.image = { name, offset: at + 512, size: length };
        groups.set(key, group);
      }
      at += 512 + Math.ceil(length / 512) * 512;
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
            const buf = Buffer.alloc(bytes);
            const f = openSync(shard, 'r');
            readSync(f, buf, 0, bytes, offset);
            closeSync(f);
            return buf;
          },
        });
      }
    }
  }
  return { pairs, skipped };
}

/** A CSV/TSV file, a folder, or webdataset .tar shards, by what the path is. */
export function readPairs(path: string): Listing {
  if (/\.tar$/i.test(path)) return readShards(path);
  if (!existsSync(path)) throw new Error(`${path}: no such file or folder`);
  return statSync(path).isDirectory() ? readFolder(path) : readCsv(path);
}

/** Decodes and prepares one pair, or reports why it cannot be used. */
export function loadPair(pair: Pair, n: number, train: boolean, random: () => number): Float32Array | ImageError {
  try {
    const img = pair.read ? decodeImage(pair.read(), pair.image) : readImage(pair.image);
    return train ? randomResizedCrop(img, n, random) : preprocess(img, n);
  } catch (e) {
    return e instanceof ImageError ? e : new ImageError(`${pair.image}: ${(e as Error).message}`);
  }
}

/**
 * Image–caption pairs as a training data source: a seeded shuffle per epoch, RandomResizedCrop for training, the
 * last 10% (at most 500) kept for validation. An image that fails to decode is reported once, counted, and
 * replaced by the next example in the shuffled order.
 */
export function fileSource(pairs: Pair[], seed: number, log: (line: string) => void): DataSource & { failures: () => number } {
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
  const load = (list: Pair[], indexOf: (k: number) => number, count: number, n: number, augment: boolean, first: number) => {
    const pixels = new Float32Array(count * 3 * n * n);
    const captions: string[] = [];
    for (let i = 0; i < count; i++) {
      for (let k = 0; ; k++) {
        if (k >= list.length) throw new Error('training data: no image could be decoded');
        const pair = list[(indexOf(first + i) + k) % list.length];
        const result = loadPair(pair, n, augment, mulberry32(seed + first + i));
        if (result instanceof Error) {
          failures++;
          if (!reported.has(pair.image)) {
            reported.add(pair.image);
            log(`skipping unreadable image: ${result.message}`);
          }
          continue;
        }
        pixels.set(result, i * 3 * n * n);
        captions.push(pair.caption);
        break;
      }
    }
    return { pixels, captions };
  };
  return {
    batch: (start, size, n) => load(train, (e) => orderOf(Math.floor(e / train.length))[e % train.length], size, n, true, start),
    validation: (count, n) => load(val, (e) => e % val.length, Math.min(count, val.length), n, false, 0),
    corpus: (count) => train.slice(0, count).map((p) => p.caption),
    failures: () => failures,
  };
}
