// Writes a contact sheet of a built-in dataset's first training examples as a PNG and prints their captions:
//   node scripts/run.mjs examples/preview_data.ts [--dataset scenes] [--count 16] [--size 64] [--out preview.png]
import { parseArgs } from 'node:util';
import { writePng } from '../clip/io/images.ts';
import { denormalize } from '../clip/preprocess.ts';
import { BUILTIN_DATASETS, builtinSource } from '../clip/data/index.ts';

const { values } = parseArgs({
  options: {
    dataset: { type: 'string', default: 'scenes' },
    count: { type: 'string', default: '16' },
    size: { type: 'string', default: '64' },
    out: { type: 'string', default: 'preview.png' },
    seed: { type: 'string', default: '0' },
  },
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
const sheet = { width: columns * (n + gap), height: rows * (n + gap), data: new Float32Array(columns * (n + gap) * rows * (n + gap) * 3).fill(96) };
for (let i = 0; i < count; i++) {
  const ox = (i % columns) * (n + gap);
  const oy = Math.floor(i / columns) * (n + gap);
  const tile = denormalize(pixels, n, n, i * 3 * n * n);
  for (let y = 0; y < n; y++) sheet.data.set(tile.data.subarray(y * n * 3, (y + 1) * n * 3), ((oy + y) * sheet.width + ox) * 3);
  console.log(`${String(i).padStart(3)}  ${captions[i]}`);
}
writePng(values.out!, sheet);
console.log(`wrote ${values.out} (${columns}×${rows} images of ${n}×${n})`);
