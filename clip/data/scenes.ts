// The built-in dataset: seeded, procedurally drawn scenes of one or two coloured shapes with captions
// ("a small red circle above a blue square"). Some colour–shape pairs never appear in training, in any
// position or caption; zero-shot classification of images of those pairs measures compositional transfer.
//
// Every example is a pure function of (seed, index), so a run needs no data files, batches are identical
// across runs, and resuming at step s regenerates exactly the batches an uninterrupted run would see.
import { CLIP_MEAN, CLIP_STD } from '../preprocess.ts';

export const COLORS: Record<string, [number, number, number]> = {
  red: [220, 40, 40],
  green: [40, 180, 60],
  blue: [50, 80, 230],
  yellow: [235, 220, 40],
  purple: [150, 60, 200],
  orange: [245, 140, 30],
};
export const SHAPES = ['circle', 'square', 'triangle', 'cross'] as const;
export type Shape = (typeof SHAPES)[number];
export const SIZES = ['small', 'large'] as const;

/** Colour–shape pairs held out of training (each colour and each shape still appears in other pairs). */
export const HELD_OUT: [string, Shape][] = [
  ['red', 'circle'],
  ['green', 'square'],
  ['blue', 'triangle'],
  ['yellow', 'cross'],
  ['purple', 'circle'],
  ['orange', 'square'],
];

export interface SceneObject {
  color: string;
  shape: Shape;
  size: (typeof SIZES)[number];
  /** Centre, in [0, 1] image coordinates. */
  x: number;
  y: number;
}

export interface Example {
  objects: SceneObject[];
  caption: string;
}

/** MurmurHash3's finaliser: scrambles an integer so that neighbouring indices give unrelated streams. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A small seeded PRNG (mulberry32) per example, its state a hash of (seed, index). */
function random(seed: number, index: number): () => number {
  let a = fmix32(fmix32(seed + 0x9e3779b9) ^ index);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const isHeldOut = (color: string, shape: string) => HELD_OUT.some(([c, s]) => c === color && s === shape);

function randomObject(r: () => number, allowed: (color: string, shape: Shape) => boolean): Omit<SceneObject, 'x' | 'y'> {
  for (;;) {
    const color = pick(r, Object.keys(COLORS));
    const shape = pick(r, SHAPES);
    if (allowed(color, shape)) return { color, shape, size: pick(r, SIZES) };
  }
}

const describe = (o: Omit<SceneObject, 'x' | 'y'>, withSize: boolean) => `${withSize ? `${o.size} ` : ''}${o.color} ${o.shape}`;
const SINGLE = [(d: string) => `a ${d}`, (d: string) => `a photo of a ${d}`, (d: string) => `a ${d} on a black background`, (d: string) => `there is a ${d}`];
const RELATIONS: Record<'above' | 'below' | 'left of' | 'right of', [number, number]> = { above: [0, -1], below: [0, 1], 'left of': [-1, 0], 'right of': [1, 0] };

/** Example `index` of the split: training scenes avoid the held-out pairs; `heldOut` scenes are one of them. */
export function example(seed: number, index: number, split: 'train' | 'heldOut' = 'train'): Example {
  const r = random(seed, index * 2 + (split === 'train' ? 0 : 1));
  const allowed = split === 'train' ? (c: string, s: Shape) => !isHeldOut(c, s) : (c: string, s: Shape) => isHeldOut(c, s);
  const withSize = r() < 0.5;
  if (split === 'heldOut' || r() < 0.6) {
    const o = randomObject(r, allowed);
    return { objects: [{ ...o, x: 0.3 + 0.4 * r(), y: 0.3 + 0.4 * r() }], caption: pick(r, SINGLE)(describe(o, withSize)) };
  }
  const a = randomObject(r, allowed);
  const b = randomObject(r, allowed);
  const relation = pick(r, Object.keys(RELATIONS) as (keyof typeof RELATIONS)[]);
  const [dx, dy] = RELATIONS[relation];
  const cx = 0.5 + 0.1 * (r() - 0.5);
  const cy = 0.5 + 0.1 * (r() - 0.5);
  return {
    objects: [
      { ...a, x: cx + 0.25 * dx, y: cy + 0.25 * dy },
      { ...b, x: cx - 0.25 * dx, y: cy - 0.25 * dy },
    ],
    caption: `a ${describe(a, withSize)} ${relation} a ${describe(b, withSize)}`,
  };
}

function inside(shape: Shape, u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return Math.abs(u) <= 0.85 && Math.abs(v) <= 0.85;
    case 'triangle':
      return v <= 0.9 && v >= -0.9 && Math.abs(u) <= (v + 0.9) / 1.8;
    case 'cross':
      return (Math.abs(u) <= 0.3 && Math.abs(v) <= 1) || (Math.abs(v) <= 0.3 && Math.abs(u) <= 1);
  }
}

/** Draws the scene at n×n (2×2 supersampled) and writes it normalised, CHW, into `out` at `offset`. */
export function render(ex: Example, n: number, out: Float32Array, offset = 0, noise = 0, seed = 0): void {
  const r = random(seed, 12345);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const rgb = [0, 0, 0];
      for (let sy = 0; sy < 2; sy++)
        for (let sx = 0; sx < 2; sx++) {
          const px = (x + 0.25 + 0.5 * sx) / n;
          const py = (y + 0.25 + 0.5 * sy) / n;
          for (const o of ex.objects) {
            const radius = o.size === 'large' ? 0.24 : 0.16;
            if (inside(o.shape, (px - o.x) / radius, (py - o.y) / radius)) {
              const c = COLORS[o.color];
              for (let k = 0; k < 3; k++) rgb[k] += c[k] / 4;
            }
          }
        }
      for (let k = 0; k < 3; k++) {
        const v = Math.min(255, Math.max(0, rgb[k] + noise * (r() - 0.5)));
        out[offset + (k * n + y) * n + x] = (v / 255 - CLIP_MEAN[k]) / CLIP_STD[k];
      }
    }
}

/** The zero-shot classes: every colour–shape pair, and which of them are held out. */
export function compositionClasses(): { names: string[]; heldOut: boolean[] } {
  const names: string[] = [];
  const heldOut: boolean[] = [];
  for (const color of Object.keys(COLORS))
    for (const shape of SHAPES) {
      names.push(`${color} ${shape}`);
      heldOut.push(isHeldOut(color, shape));
    }
  return { names, heldOut };
}
