// Preprocessing against PIL itself: fixtures made by scripts/fixtures/pil_images.py (test/fixtures/README.md)
// with Debian's python3-pil — bicubic resize + centre crop on noise, text-like edges, gradients and a
// photo-like image, shrinking and enlarging, at several aspect ratios.
import * as assert from 'uvu/assert';
import { readdirSync } from 'node:fs';
import { readImage } from '../clip/io/images.ts';
import { resizeCenterCrop, type RgbImage } from '../clip/preprocess.ts';
import { FIXTURES, suite } from './harness.ts';

const test = suite('pil');
const DIR = `${FIXTURES}/pil`;

/** The largest and the mean absolute difference of two images of one size, in grey levels. */
function difference(a: RgbImage, b: RgbImage): { max: number; mean: number } {
  assert.equal([a.width, a.height], [b.width, b.height], 'sizes');
  let [max, sum] = [0, 0];
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.data.length };
}

test('bicubic resize + centre crop equal PIL\'s on every fixture, to the grey level', () => {
  const cases = readdirSync(DIR).map((f) => /^(.+)\.(\d+)\.png$/.exec(f)).filter((m) => m !== null);
  assert.ok(cases.length >= 10, `fixtures in ${DIR}`);
  for (const [file, name, n] of cases) {
    const { max } = difference(resizeCenterCrop(readImage(`${DIR}/${name}.png`), Number(n)), readImage(`${DIR}/${file}`));
    assert.is(max, 0, `${file}: largest difference from PIL`);
  }
});
test.run();
