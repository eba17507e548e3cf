// The full-size check: ViT-B/32 and RN50 at their published sizes, built here from PyTorch state dicts made by
// scripts/fullsize/reference.py (openai/CLIP's model code, random weights), run on this machine's adapter, and
// compared with PyTorch's float64 outputs. Passes when features and logits are within 1e-5 relative, the
// train-mode loss within 1e-5, and the gradients within twice PyTorch's own float32 error (its float32 run
// against its float64 run, measured the same way: the worst parameter, each against at least 1e-5 of the
// largest gradient). That error is what float32 can reach: train-mode batch norm over few images is
// ill-conditioned (a channel that ReLU leaves nearly constant is divided by √ε), and two float32 computations
// that sum in different orders then err by similar amounts on different parameters. So per parameter only
// the distribution is printed: our error over PyTorch's own (or 1e-5), its median and the largest.
// node scripts/run.mjs scripts/fullsize/check.ts DIR   (DIR as the reference script wrote it; run by check.sh)
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../../ops/index.ts';
import { readTorchFile } from '../../nn/io/pytorch.ts';
import { parity } from '../../clip/parity.ts';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/run.mjs scripts/fullsize/check.ts DIR');
  process.exit(2);
}
await T.init();
let failed = false;
for (const name of readdirSync(dir).sort()) {
  const weightsPath = join(dir, name, 'weights.pt');
  const ioPath = join(dir, name, 'io.pt');
  const io = readTorchFile(ioPath);
  const reference = (key: string) => {
    const t = io.tensors.get(`reference_error.${key}`);
    if (!t) throw new Error(`${ioPath}: no 'reference_error.${key}' (made by an older reference.py?)`);
    return t.data[0];
  };
  const started = performance.now();
  const gradErrors = new Map<string, number>();
  const ours = await parity(readTorchFile(weightsPath), io, weightsPath, ioPath, 'fp32', gradErrors);
  const ratios = [...gradErrors].map(([param, error]) => error / Math.max(1e-5, reference(`grad.${param}`))).sort((x, y) => x - y);
  const rows = [
    { group: 'features', ours: ours.features, pytorch: reference('features'), limit: 1e-5 },
    { group: 'logits', ours: ours.logits, pytorch: reference('logits'), limit: 1e-5 },
    { group: 'loss', ours: ours.loss, pytorch: reference('loss'), limit: 1e-5 },
    { group: 'grads', ours: ours.grads, pytorch: reference('grads'), limit: Math.max(1e-5, 2 * reference('grads')) },
  ];
  failed ||= rows.some((r) => r.ours > r.limit);
  console.log(`${name} (${((performance.now() - started) / 1000).toFixed(0)} s; worst gradient ${ours.worst_grad})`);
  for (const r of rows) {
    const figures = `ours ${r.ours.toExponential(2)}  PyTorch f32 ${r.pytorch.toExponential(2)}  limit ${r.limit.toExponential(2)}`;
    console.log(`  ${r.group.padEnd(8)} ${figures}  ${r.ours <= r.limit ? 'ok' : 'FAIL'}`);
  }
  const [median, largest] = [ratios[ratios.length >> 1].toFixed(2), ratios[ratios.length - 1].toFixed(1)];
  const over = ratios.filter((x) => x > 4).length;
  console.log(`  per parameter (${ratios.length}), ours / max(PyTorch f32's own, 1e-5): median ${median}, largest ${largest}, over 4: ${over}`);
}
T.closeGpu();
process.exit(failed ? 1 : 0);
