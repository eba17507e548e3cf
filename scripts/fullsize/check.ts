// The full-size check: ViT-B/32 and RN50 at their published sizes, built here from PyTorch state dicts made by
// scripts/fullsize/reference.py (openai/CLIP's model code, random weights), run on this machine's adapter, and
// compared with PyTorch's float64 outputs. Passes when
//   - features and logits are within 1e-5 relative, the train-mode loss within 1e-5;
//   - each parameter's gradient is within 4× PyTorch's own float32 error on it (its float32 run against its
//     float64 run, measured the same way; train-mode batch norm over few images is ill-conditioned, so that
//     error is what float32 can reach there), or 1e-5 where that is larger. Two float32 computations that sum
//     in different orders land severalfold apart from the exact value on single parameters, hence the 4×; the
//     median of the ratios, printed, says whether ours is of PyTorch's order overall;
//   - a gradient that is zero in exact arithmetic (attention pooling's key bias: softmax ignores a shift
//     shared by all keys) is rounding noise in both: it must stay below 1e-5 of the largest gradient.
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
  const zero = new Set(ours.zero_grads ?? []);
  // Per parameter: our error over its limit; the worst decides. Ratios to PyTorch's own error, for the median.
  let [worst, worstName, worstLimit] = [0, '', 0];
  const ratios: number[] = [];
  for (const [param, error] of gradErrors) {
    const own = Math.max(1e-5, reference(`grad.${param}`));
    const limit = zero.has(param) ? 1 : 4 * own;
    if (!zero.has(param)) ratios.push(error / own);
    if (error / limit > worst) [worst, worstName, worstLimit] = [error / limit, param, limit];
  }
  ratios.sort((a, b) => a - b);
  const rows = [
    { group: 'features', ours: ours.features, pytorch: reference('features'), limit: 1e-5 },
    { group: 'logits', ours: ours.logits, pytorch: reference('logits'), limit: 1e-5 },
    { group: 'loss', ours: ours.loss, pytorch: reference('loss'), limit: 1e-5 },
    { group: 'grads', ours: gradErrors.get(worstName)!, pytorch: reference(`grad.${worstName}`), limit: worstLimit },
  ];
  failed ||= rows.some((r) => r.ours > r.limit);
  console.log(`${name} (${((performance.now() - started) / 1000).toFixed(0)} s; worst gradient against its limit: ${worstName}${zero.has(worstName) ? ', zero in exact arithmetic' : ''})`);
  for (const r of rows) console.log(`  ${r.group.padEnd(8)} ours ${r.ours.toExponential(2)}  PyTorch f32 ${r.pytorch.toExponential(2)}  limit ${r.limit.toExponential(2)}  ${r.ours <= r.limit ? 'ok' : 'FAIL'}`);
  console.log(`  gradients of ${ratios.length} parameters: ours / max(PyTorch f32's own, 1e-5) has median ${ratios[ratios.length >> 1].toFixed(2)}, largest ${ratios[ratios.length - 1].toFixed(2)}`);
  console.log(`  worst gradient overall: ours ${ours.grads.toExponential(2)} on ${ours.worst_grad}; PyTorch f32's own worst ${reference('grads').toExponential(2)}; ${zero.size} zero in exact arithmetic${zero.size ? ` (${[...zero].slice(0, 3).join(', ')}${zero.size > 3 ? ', …' : ''})` : ''}`);
}
T.closeGpu();
process.exit(failed ? 1 : 0);
