// Writes a contact sheet of a built-in dataset's first training examples as a PNG and prints their captions:
//   node scripts/run.mjs examples/preview_data.ts [--dataset scenes] [--count 16] [--size 64] [--out preview.png]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PNG } from 'pngjs';
import { CLIP_MEAN, CLIP_STD } from '../clip/preprocess.ts';
import { BUILTIN_DATASETS, builtinSource } from '../clip/train.ts';

const { values } = parseArgs({
  options: { dataset: { type: 'string', default: 'scenes' }, count: { type: 'string', default: '16' }, size: { type: 'string', default: '64' }, out: { type: 'string', default: 'preview.png' }, seed: { type: 'string', default: '0' } },
});
if (!(BUILTIN_DATASETS as readonly string[]).includes(values.dataset!)) {
  console.error(`preview_data: --dataset must be one of ${BUILTIN_DATASETS.join(', ')}`);
  process.exit(2);
}
const count = Number(values.count);
const n = Number(values.size);
const { pixels, captions } = builtinSource(values.dataset!, Number(values.seed)).batch(0, count, n);
const columns = Math.ceil(Math.sqrt(count));
const rows = Math.ceil(count / columns);
const gap = 2;
const png = new PNG({ width: columns * (n + gap), height: rows * (n + gap) });
png.data.fill(96);
for (let i = 0; i < count; i++) {
  const ox = (i % columns) * (n + gap);
  const oy = Math.floor(i / columns) * (n + gap);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const p = 4 * ((oy + y) * png.width + ox + x);
      for (let c = 0; c < 3; c++) png.data[p + c] = Math.round(255 * Math.min(1, Math.max(0, pixels[((i * 3 + c) * n + y) * n + x] * CLIP_STD[c] + CLIP_MEAN[c])));
      png.data[p + 3] = 255;
    }
  console.log(`${String(i).padStart(3)}  ${captions[i]}`);
}
writeFileSync(values.out!, PNG.sync.write(png));
console.log(`wrote ${values.out} (${columns}×${rows} images of ${n}×${n})`);
