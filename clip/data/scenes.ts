// The built-in datasets of captioned scenes: one or two coloured objects on a black background, with captions
// such as "a small red circle above a blue square". The objects are either drawn procedurally (shapes, the
// default: no files needed) or taken from the MNIST family (coloured digits or clothes: "a large green seven
// left of a red three"), so captions describe real image content. Some colour–object pairs never appear in
// training, in any position or caption; zero-shot classification of images of those pairs measures
// compositional transfer.
//
// Every example is a pure function of (world, seed, index), so a run needs no data files beyond the MNIST
// packages, batches are identical across runs, and resuming at step s regenerates exactly the batches an
// uninterrupted run would see.
import { mulberry32 } from '../../core/random.ts';
import { normalizeValue } from '../preprocess.ts';
import { withArticle } from '../prompts.ts';
import type { DataSource, ZeroShotTask } from './source.ts';

type Rgb = [number, number, number];

export const COLORS: Record<string, Rgb> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [50, 80, 230],
  yellow: [235, 220, 40],
  purple: [150, 60, 200],
  orange: [245, 140, 30],
  white: [235, 235, 235],
  cyan: [40, 200, 210],
};

/** What objects look like: named kinds, each with one or more drawings per split. */
export interface Glyphs {
  /** The kinds as captions name them ("circle", "seven", "sneaker"). */
  kinds: readonly string[];
  /** Distinct drawings of `kind` in a split (1 for a procedural shape). */
  instances(kind: number, split: 'train' | 'test'): number;
  /** Drawing `instance` of `kind`: its ink coverage in [0, 1] at object-local (u, v) ∈ [−1, 1]². */
  drawing(kind: number, instance: number, split: 'train' | 'test'): (u: number, v: number) => number;
}

/** A scene world: colours, glyphs, object sizes and the held-out colour–kind pairs. */
export interface World {
  colors: Record<string, Rgb>;
  glyphs: Glyphs;
  /** Object half-width, as a fraction of the image side, by size word. */
  sizes: Record<string, number>;
  heldOut: [string, string][];
}

export const SHAPES = ['circle', 'square', 'triangle', 'cross', 'diamond', 'ring'] as const;

function insideShape(shape: (typeof SHAPES)[number], u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return Math.abs(u) <= 0.85 && Math.abs(v) <= 0.85;
    case 'triangle':
      return v <= 0.9 && v >= -0.9 && Math.abs(u) <= (v + 0.9) / 1.8;
    case 'cross':
      return (Math.abs(u) <= 0.3 && Math.abs(v) <= 1) || (Math.abs(v) <= 0.3 && Math.abs(u) <= 1);
    case 'diamond':
      return Math.abs(u) + Math.abs(v) <= 1;
    case 'ring':
      return u * u + v * v <= 1 && u * u + v * v >= 0.4;
  }
}

const shapeGlyphs: Glyphs = {
  kinds: SHAPES,
  instances: () => 1,
  drawing: (kind) => (u, v) => (insideShape(SHAPES[kind], u, v) ? 1 : 0),
};

/** 8 colours × 6 shapes; each colour is held out with one shape, each shape with at most two colours. */
export const SHAPE_WORLD: World = {
  colors: COLORS,
  glyphs: shapeGlyphs,
  sizes: { small: 0.2, large: 0.28 },
  heldOut: [
    ['red', 'circle'],
    ['green', 'square'],
    ['blue', 'triangle'],
    ['yellow', 'cross'],
    ['purple', 'diamond'],
    ['orange', 'ring'],
    ['white', 'triangle'],
    ['cyan', 'circle'],
  ],
};

export interface SceneObject {
  color: string;
  kind: string;
  /** Which drawing of the kind (an index into its split's images). */
  instance: number;
  size: string;
  /** Centre, in [0, 1] image coordinates. */
  x: number;
  y: number;
}

export interface Example {
  objects: SceneObject[];
  caption: string;
}

/** Which colour–kind pairs (seen in training or held out) and which drawings (train or test split). */
export interface Draw {
  pairs: 'seen' | 'heldOut';
  split: 'train' | 'test';
  /** Only single-object scenes (zero-shot classification images). */
  single?: boolean;
}

const TRAINING: Draw = { pairs: 'seen', split: 'train' };

/** MurmurHash3's finaliser: scrambles an integer so that neighbouring indices give unrelated streams. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A small seeded PRNG (mulberry32) per example, its state a hash of (seed, index). */
export function random(seed: number, index: number): () => number {
  return mulberry32(fmix32(fmix32(seed + 0x9e3779b9) ^ index));
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const isHeldOut = (world: World, color: string, kind: string) => world.heldOut.some(([c, k]) => c === color && k === kind);

function randomObject(world: World, r: () => number, draw: Draw): Omit<SceneObject, 'x' | 'y'> {
  const colors = Object.keys(world.colors);
  for (;;) {
    const color = pick(r, colors);
    const k = Math.floor(r() * world.glyphs.kinds.length);
    const kind = world.glyphs.kinds[k];
    if (isHeldOut(world, color, kind) !== (draw.pairs === 'heldOut')) continue;
    const instance = Math.floor(r() * world.glyphs.instances(k, draw.split));
    return { color, kind, instance, size: pick(r, Object.keys(world.sizes)) };
  }
}

const describe = (o: Omit<SceneObject, 'x' | 'y'>, withSize: boolean) => `${withSize ? `${o.size} ` : ''}${o.color} ${o.kind}`;
const SINGLE = [
  (d: string) => withArticle(d),
  (d: string) => `a photo of ${withArticle(d)}`,
  (d: string) => `${withArticle(d)} on a black background`,
  (d: string) => `there is ${withArticle(d)}`,
];
const RELATIONS: Record<'above' | 'below' | 'left of' | 'right of', [number, number]> = {
  above: [0, -1],
  below: [0, 1],
  'left of': [-1, 0],
  'right of': [1, 0],
};

/** Example `index` drawn as `draw` says (by default a training scene: seen pairs, training drawings). */
export function example(world: World, seed: number, index: number, draw: Draw = TRAINING): Example {
  const stream = (draw.pairs === 'seen' ? 0 : 1) + (draw.split === 'train' ? 0 : 2);
  const r = random(seed, index * 4 + stream);
  const withSize = r() < 0.5;
  if (draw.single || r() < 0.6) {
    const o = randomObject(world, r, draw);
    return { objects: [{ ...o, x: 0.3 + 0.4 * r(), y: 0.3 + 0.4 * r() }], caption: pick(r, SINGLE)(describe(o, withSize)) };
  }
  const a = randomObject(world, r, draw);
  const b = randomObject(world, r, draw);
  const relation = pick(r, Object.keys(RELATIONS) as (keyof typeof RELATIONS)[]);
  const [dx, dy] = RELATIONS[relation];
  const cx = 0.5 + 0.1 * (r() - 0.5);
  const cy = 0.5 + 0.1 * (r() - 0.5);
  return {
    objects: [
      { ...a, x: cx + 0.26 * dx, y: cy + 0.26 * dy },
      { ...b, x: cx - 0.26 * dx, y: cy - 0.26 * dy },
    ],
    caption: `${withArticle(describe(a, withSize))} ${relation} ${withArticle(describe(b, withSize))}`,
  };
}

/** Draws the scene at n×n (2×2 supersampled) and writes it normalised, CHW, into `out` at `offset`;
 * `noise` adds uniform pixel noise of that amplitude (0–255 scale). */
export function render(world: World, ex: Example, split: 'train' | 'test', n: number, out: Float32Array, offset = 0, noise = 0, seed = 0): void {
  const r = random(seed, 12345);
  const objects = ex.objects.map((o) => ({
    ...o,
    ink: world.glyphs.drawing(world.glyphs.kinds.indexOf(o.kind), o.instance, split),
    radius: world.sizes[o.size],
    rgb: world.colors[o.color],
  }));
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const rgb = [0, 0, 0];
      for (let sy = 0; sy < 2; sy++)
        for (let sx = 0; sx < 2; sx++) {
          const px = (x + 0.25 + 0.5 * sx) / n;
          const py = (y + 0.25 + 0.5 * sy) / n;
          for (const o of objects) {
            const u = (px - o.x) / o.radius;
            const v = (py - o.y) / o.radius;
            if (Math.abs(u) > 1 || Math.abs(v) > 1) continue;
            const ink = o.ink(u, v);
            for (let c = 0; c < 3; c++) rgb[c] += (o.rgb[c] * ink) / 4;
          }
        }
      for (let c = 0; c < 3; c++) {
        const value = Math.min(255, Math.max(0, rgb[c] + noise * (r() - 0.5)));
        out[offset + (c * n + y) * n + x] = normalizeValue(value, c);
      }
    }
}

/** The zero-shot classes: every colour–kind pair, and which of them are held out. */
export function compositionClasses(world: World): { names: string[]; heldOut: boolean[] } {
  const names: string[] = [];
  const heldOut: boolean[] = [];
  for (const color of Object.keys(world.colors))
    for (const kind of world.glyphs.kinds) {
      names.push(`${color} ${kind}`);
      heldOut.push(isHeldOut(world, color, kind));
    }
  return { names, heldOut };
}

/** Captioned scenes of procedural shapes or of coloured MNIST-family images, as a training data source. */
export function sceneSource(world: World, seed: number): DataSource {
  const draw = (s: number, start: number, size: number, n: number, noise: number, how?: Draw) => {
    const pixels = new Float32Array(size * 3 * n * n);
    const captions: string[] = [];
    for (let i = 0; i < size; i++) {
      const ex = example(world, s, start + i, how);
      render(world, ex, how?.split ?? 'train', n, pixels, i * 3 * n * n, noise, start + i);
      captions.push(ex.caption);
    }
    return { pixels, captions };
  };
  return {
    batch: (start, size, n) => draw(seed, start, size, n, 24),
    validation: (count, n) => draw(seed + 2, 0, count, n, 0, { pairs: 'seen', split: 'test' }),
    corpus: (count) => Array.from({ length: count }, (_, i) => example(world, seed, 30_000_000 + i).caption),
    zeroShot: sceneZeroShot(world, seed),
  };
}

/** Zero-shot prompts for a colour–kind class ("a red circle"), ensembled. */
export const SCENE_TEMPLATES = ['{a} {}', 'a photo of {a} {}', 'there is {a} {}', '{a} {} on a black background'];

/** Every colour–kind class; single-object images of held-out and of seen compositions (test drawings). */
function sceneZeroShot(world: World, seed: number): ZeroShotTask {
  const { names } = compositionClasses(world);
  const images = (pairs: Draw['pairs'], split: Draw['split'], count: number, offset: number) => (n: number) => {
    const pixels = new Float32Array(count * 3 * n * n);
    const labels: number[] = [];
    for (let i = 0; i < count; i++) {
      const ex = example(world, seed + 1, offset + i, { pairs, split, single: true });
      render(world, ex, split, n, pixels, i * 3 * n * n);
      labels.push(names.indexOf(`${ex.objects[0].color} ${ex.objects[0].kind}`));
    }
    return { pixels, labels };
  };
  return {
    classes: names,
    templates: SCENE_TEMPLATES,
    sets: [
      { name: 'held-out compositions', images: images('heldOut', 'test', 240, 0) },
      { name: 'seen compositions', images: images('seen', 'test', 240, 0) },
    ],
    probe: (n) => ({
      train: images('seen', 'train', 960, 1_000_000)(n),
      validation: images('seen', 'train', 480, 2_000_000)(n),
      test: images('seen', 'test', 480, 3_000_000)(n),
    }),
  };
}
