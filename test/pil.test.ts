// Preprocessing against PIL itself: fixtures made by scripts/fixtures/pil_images.py (test/fixtures/README.md)
// with Debian's python3-pil — bicubic resize + centre crop on noise, text-like edges, gradients and a
// photo-like image, shrinking and enlarging, at several aspect ratios; JPEG decoding (libjpeg-turbo, as PIL
// decodes) of baseline and progressive files, 4:2:0, 4:2:2, 4:4:4, grey and CMYK; damaged JPEGs refused.
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync } from 'node:fs';
import { readImage } from '../clip/io/images.ts';
import { ImageError, decodeImage, resizeCenterCrop, type RgbImage } from '../clip/preprocess.ts';
import { FIXTURES, assertThrows, suite } from './harness.ts';

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
test('JPEGs decode to PIL\'s pixels: every baseline, progressive, subsampled and grey fixture exactly', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.jpg'));
  assert.ok(files.length >= 20, `fixtures in ${DIR}`);
  for (const file of files) {
    const { max, mean } = difference(readImage(`${DIR}/${file}`), readImage(`${DIR}/${file}.png`));
    // CMYK goes through jpeg-js, whose conversion rounds differently from PIL's by at most one level.
    if (file.includes('.cmyk.')) assert.ok(max <= 1 && mean < 0.1, `${file}: max ${max}, mean ${mean}`);
    else assert.is(max, 0, `${file}: largest difference from PIL`);
  }
});

test('damaged and unsupported JPEGs are refused with one line naming the file', async () => {
  const good = readFileSync(`${DIR}/photo_83x61.progressive420.jpg`);
  const refuse = (bytes: Uint8Array, pattern: RegExp) => assertThrows(() => decodeImage(bytes, 'p.jpg'), ImageError, /^p\.jpg: cannot decode \([^\n]+\)$/, pattern);
  await refuse(good.subarray(0, good.length >> 1), /truncated/);
  await refuse(good.subarray(0, 40), /truncated/);
  const sof = good.findIndex((b, i) => b === 0xff && good[i + 1] === 0xc2);
  const arithmetic = Uint8Array.from(good);
  arithmetic[sof + 1] = 0xca;
  await refuse(arithmetic, /arithmetic-coded JPEG \(SOF10\) is not supported/);
  const twelveBit = Uint8Array.from(good);
  twelveBit[sof + 4] = 12;
  await refuse(twelveBit, /12-bit samples are not supported/);
});

test.run();
