// The built-in datasets: scenes are deterministic, respect the held-out pairs, and draw what their captions
// say; MNIST loads with its fixed split; coloured MNIST scenes take evaluation drawings from the test split.
import * as assert from 'uvu/assert';
import { CLIP_MEAN, CLIP_STD } from '../clip/preprocess.ts';
import { COLORS, SHAPE_WORLD, compositionClasses, example, render, type World } from '../clip/data/scenes.ts';
import { GREY_DATASETS, classCount, classImage, greyExample, greyWorld, loadGreyDataset, renderGrey, splitSize } from '../clip/data/mnist.ts';
import { builtinSource } from '../clip/data/index.ts';
import { fillTemplate, withArticle } from '../clip/prompts.ts';
import { suite } from './harness.ts';

const test = suite('data');

const pairsOf = (world: World, seed: number, count: number, draw?: Parameters<typeof example>[3]) =>
  Array.from({ length: count }, (_, i) => example(world, seed, i, draw)).flatMap((ex) => ex.objects.map((o) => `${o.color} ${o.kind}`));

test('scenes: training never shows a held-out pair; the held-out draw shows only those', () => {
  const heldOut = new Set(SHAPE_WORLD.heldOut.map(([c, k]) => `${c} ${k}`));
  const seen = pairsOf(SHAPE_WORLD, 5, 3000);
  assert.ok(seen.every((p) => !heldOut.has(p)));
  // Every seen pair does occur, so each colour and each shape is learned.
  const { names, heldOut: flags } = compositionClasses(SHAPE_WORLD);
  assert.equal(names.length, Object.keys(COLORS).length * SHAPE_WORLD.glyphs.kinds.length);
  assert.equal(new Set(seen).size, flags.filter((f) => !f).length);
  const test = pairsOf(SHAPE_WORLD, 5, 300, { pairs: 'heldOut', split: 'test' });
  assert.ok(test.every((p) => heldOut.has(p)));
  assert.equal(new Set(test).size, heldOut.size);
});

test('scenes: examples are a pure function of (seed, index); captions name every object with the right article', () => {
  for (let i = 0; i < 200; i++) {
    const a = example(SHAPE_WORLD, 9, i);
    assert.equal(example(SHAPE_WORLD, 9, i), a);
    for (const o of a.objects) assert.ok(a.caption.includes(`${o.color} ${o.kind}`), a.caption);
    // English articles: "an orange ring", never "a orange ring".
    assert.not.match(a.caption, /\ba [aeiou]/, a.caption);
    assert.not.match(a.caption, /\ban [^aeiou]/, a.caption);
  }
  assert.not.equal(example(SHAPE_WORLD, 9, 0), example(SHAPE_WORLD, 10, 0));
  assert.equal(withArticle('orange ring'), 'an orange ring');
  assert.equal(withArticle('large orange ring'), 'a large orange ring');
  assert.equal(fillTemplate(GREY_DATASETS['fashion-mnist'].templates[0], 'ankle boot'), 'a photo of an ankle boot');
  assert.equal(fillTemplate('there is {a} {}', 'red circle'), 'there is a red circle');
  assert.equal(fillTemplate('a {} in a video game.', 'ankle boot'), 'a ankle boot in a video game.');
});

test('scenes: an object is drawn in its colour at its centre, the background stays black', () => {
  const n = 32;
  const out = new Float32Array(3 * n * n);
  const ex = { objects: [{ color: 'orange', kind: 'square', instance: 0, size: 'large', x: 0.3, y: 0.7 }], caption: 'a large orange square' };
  render(SHAPE_WORLD, ex, 'train', n, out);
  const pixel = (x: number, y: number) => [0, 1, 2].map((c) => Math.round(255 * (out[(c * n + y) * n + x] * CLIP_STD[c] + CLIP_MEAN[c])));
  assert.equal(pixel(Math.floor(0.3 * n), Math.floor(0.7 * n)), COLORS.orange);
  assert.equal(pixel(28, 3), [0, 0, 0]);
  // Two objects related "above" are drawn one over the other.
  for (let i = 0; i < 400; i++) {
    const two = example(SHAPE_WORLD, 1, i);
    if (two.objects.length !== 2) continue;
    const [a, b] = two.objects;
    if (two.caption.includes(' above ')) assert.ok(a.y < b.y && Math.abs(a.x - b.x) < 1e-9, two.caption);
    if (two.caption.includes(' left of ')) assert.ok(a.x < b.x && Math.abs(a.y - b.y) < 1e-9, two.caption);
  }
});

test('MNIST: ten classes, the last 200 images of each are the test split, pixels are grey levels', () => {
  const data = loadGreyDataset('mnist');
  assert.equal(data.byClass.length, 10);
  for (let label = 0; label < 10; label++) {
    assert.ok(classCount(data, label, 'train') > 600, `class ${label}: ${classCount(data, label, 'train')} training images`);
    assert.is(classCount(data, label, 'test'), 200);
  }
  assert.is(splitSize(data, 'test'), 2000);
  const [label, image] = greyExample(data, 'test', 13);
  assert.is(label, 3);
  assert.is(image.length, 28 * 28);
  const max = Math.max(...image);
  assert.ok(max > 200 && Math.min(...image) === 0, `pixel range 0…${max}`);
  // Train and test images differ: the split is by index, not a copy.
  assert.not.equal(Array.from(greyExample(data, 'train', 13)[1]), Array.from(image));
});

test('MNIST training batches get RandomResizedCrop, seeded by position; evaluation images do not', () => {
  const n = 28;
  const per = 3 * n * n;
  const a = builtinSource('mnist', 3).batch(128, 4, n);
  // A pure function of (seed, position): a resumed run draws the same crops.
  assert.equal(Array.from(builtinSource('mnist', 3).batch(128, 4, n).pixels), Array.from(a.pixels));
  // The first image is a crop: no training image of its class rendered plainly equals it.
  const data = loadGreyDataset('mnist');
  const label = GREY_DATASETS.mnist.classes.findIndex((c) => new RegExp(`\\b${c}$`).test(a.captions[0]));
  assert.ok(label >= 0, a.captions[0]);
  const plain = new Float32Array(per);
  const first = a.pixels.subarray(0, per);
  for (let i = 0; i < classCount(data, label, 'train'); i++) {
    renderGrey(classImage(data, label, 'train', i), n, plain, 0);
    assert.ok(plain.some((v, p) => v !== first[p]), `training image ${i} of class ${label} came through uncropped`);
  }
  // Evaluation images are rendered plainly.
  const test = builtinSource('mnist', 3).zeroShot!.sets[0].images(n);
  renderGrey(greyExample(data, 'test', 0)[1], n, plain, 0);
  assert.equal(Array.from(test.pixels.subarray(0, per)), Array.from(plain));
});

test('Fashion-MNIST layout (rows of 0–255) parses like MNIST (flat 0–1 floats)', () => {
  const row = Array.from({ length: 784 }, (_, i) => (i * 37) % 256);
  const fashion = GREY_DATASETS['fashion-mnist'].parse(JSON.stringify({ data: [row, row] }));
  const mnist = GREY_DATASETS.mnist.parse(JSON.stringify({ data: [...row, ...row].map((v) => v / 255) }));
  assert.equal(Array.from(fashion), [...row, ...row]);
  assert.equal(Array.from(mnist), Array.from(fashion));
});

test('coloured MNIST scenes: captions name the digit, evaluation images come from the test split', () => {
  const world = greyWorld('mnist');
  assert.equal(world.heldOut.length, 10);
  const ex = example(world, 2, 7, { pairs: 'heldOut', split: 'test', single: true });
  assert.is(ex.objects.length, 1);
  assert.ok(ex.objects[0].instance < 200);
  assert.ok(GREY_DATASETS.mnist.classes.includes(ex.objects[0].kind));
  const source = builtinSource('mnist-scenes', 0);
  const { pixels, captions } = source.batch(0, 4, 32);
  assert.is(captions.length, 4);
  assert.is(pixels.length, 4 * 3 * 32 * 32);
  const task = source.zeroShot!;
  assert.is(task.classes.length, 80);
  const heldOut = task.sets[0].images(32);
  const classes = new Set(heldOut.labels);
  assert.ok([...classes].every((k) => world.heldOut.some(([c, d]) => task.classes[k] === `${c} ${d}`)));
  // Ink is drawn: some pixels are far from the black background.
  const black = (0 - CLIP_MEAN[0]) / CLIP_STD[0];
  assert.ok(heldOut.pixels.some((v) => v > black + 1));
});

test('unknown datasets are refused with the list of built-in ones', () => {
  assert.throws(() => builtinSource('cifar', 0), /unknown dataset 'cifar' \(built in: scenes, mnist, fashion-mnist/);
});

test.run();
