// User data: image–caption pairs from a CSV/TSV file (columns `filepath` and `caption`, as open_clip's
// --csv-img-key / --csv-caption-key defaults), a folder of images with a .txt caption beside each, or
// webdataset .tar shards (image + .txt members sharing a key).
// Rows that cannot be used are reported with their line and reason and skipped, never silently dropped;
// images that fail to decode at training time are reported with their path, counted, and replaced.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ImageError, decodeImage, preprocess, readImage, resizeBicubic, CLIP_MEAN, CLIP_STD, type RgbImage } from '../preprocess.ts';

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

/**
 * RandomResizedCrop as the paper trains (scale 0.9–1.0 of the area, aspect ratio 3/4–4/3), resized to n×n
 * with the same bicubic filter, normalised, CHW. `random` supplies the draws (seeded by the caller).
 */
export function randomResizedCrop(img: RgbImage, n: number, random: () => number, [minScale, maxScale] = [0.9, 1]): Float32Array {
  const area = img.width * img.height;
  let [w, h, x, y] = [img.width, img.height, 0, 0];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (minScale + (maxScale - minScale) * random());
    const ratio = Math.exp(Math.log(3 / 4) + (Math.log(4 / 3) - Math.log(3 / 4)) * random());
    const cw = Math.round(Math.sqrt(target * ratio));
    const ch = Math.round(Math.sqrt(target / ratio));
    if (cw > 0 && ch > 0 && cw <= img.width && ch <= img.height) {
      [w, h] = [cw, ch];
      x = Math.floor(random() * (img.width - cw + 1));
      y = Math.floor(random() * (img.height - ch + 1));
      break;
    }
  }
  const crop = new Float32Array(w * h * 3);
  for (let r = 0; r < h; r++) crop.set(img.data.subarray(((y + r) * img.width + x) * 3, ((y + r) * img.width + x + w) * 3), r * w * 3);
  const resized = resizeBicubic({ width: w, height: h, data: crop }, n, n);
  const out = new Float32Array(3 * n * n);
  for (let p = 0; p < n * n; p++) for (let c = 0; c < 3; c++) out[c * n * n + p] = (resized.data[p * 3 + c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
  return out;
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
