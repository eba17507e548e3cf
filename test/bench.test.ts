// The full-size bench suite's plumbing at a tiny size (bench/fullsize.ts; the full run itself takes hours and is
// no test): it runs only when named, its training runs are validated and replayed, its rows carry each step,
// the first step and the peak GPU bytes, and the PyTorch peer is run in both modes and compared per round.
import * as assert from 'uvu/assert';
import { runsSuite } from '../bench/index.ts';
import { benchFullSize } from '../bench/fullsize.ts';
import { torchPython } from '../bench/torch.ts';
import type { Result } from '../bench/harness.ts';
import { skipTest, suite } from './harness.ts';

const test = suite('bench');

const tiny = { model: 'ViT-tiny', trainBatches: [2], inferBatches: [1], rounds: 1, log: () => {} };
const row = (results: Result[], kernel: string, shape: string, impl: string) => {
  const found = results.find((r) => r.kernel === kernel && r.shape === shape && r.impl.startsWith(impl));
  assert.ok(found, `no row '${kernel}', '${shape}', '${impl}' in ${results.map((r) => `${r.kernel}/${r.shape}/${r.impl}`).join('; ')}`);
  return found!;
};

test('full-size runs only when --only names it; the other suites run without --only', () => {
  assert.not.ok(runsSuite('full-size', null));
  assert.ok(runsSuite('full-size', 'full-size'));
  assert.ok(runsSuite('train-step', null));
  assert.not.ok(runsSuite('train-step', 'full-size'));
});

test('full-size at a tiny size: replayed training, checkpointing, a fit check and inference, each with its steps and peak bytes', async () => {
  const results = await benchFullSize({ ...tiny, checkpointingBatch: 2, fitBatch: 4, peer: false });
  const runs = [
    row(results, 'ViT-tiny train step', 'batch 2, fp32', 'ours, replayed'),
    row(results, 'ViT-tiny train step', 'batch 2, fp32, checkpointing', 'ours, replayed'),
    row(results, 'ViT-tiny train step', 'batch 4, fp32, checkpointing', 'ours, eager'),
    row(results, 'ViT-tiny encode_image', 'batch 1, fp32', 'ours, eager'),
    row(results, 'ViT-tiny encode_image', 'batch 1, fp32', 'ours, replayed'),
  ];
  assert.is(results.length, runs.length, 'no PyTorch rows without the peer');
  for (const r of runs) {
    const run = r.run!;
    assert.is(run.error, undefined, `${r.shape}: ${run.error}`);
    assert.is(run.stepsMs.length, 1);
    assert.ok(run.firstStepMs > 0 && r.rate > 0);
    assert.ok(run.peakBytes! > 0, `${r.kernel}, ${r.shape}: peak ${run.peakBytes}`);
  }
  const [plain, checkpointed] = runs;
  assert.is(checkpointed.run!.loss![0], plain.run!.loss![0], 'the first loss with checkpointing');
  assert.ok(Math.abs(plain.run!.loss![0] - Math.log(2)) < 1.5);
});

if (!torchPython()) skipTest(test, 'full-size with the PyTorch peer', 'no python3 with torch');
else {
  test('full-size with the PyTorch peer: a training and an inference row for it, ours compared per round', async () => {
    const results = await benchFullSize({ ...tiny, checkpointingBatch: null, fitBatch: null, peer: true });
    const cases = [['ViT-tiny train step', 'batch 2, fp32', 'ours, replayed'], ['ViT-tiny encode_image', 'batch 1, fp32', 'ours, eager']];
    for (const [kernel, shape, ours] of cases) {
      const torch = row(results, kernel, shape, 'pytorch');
      assert.ok(torch.rate > 0 && torch.run!.peakBytes === null);
      const mine = row(results, kernel, shape, ours);
      assert.ok(mine.vsPeer && mine.vsPeer.lo === mine.vsPeer.hi, 'one round: one ratio');
      assert.ok(Math.abs(mine.vsPeer!.median - torch.ms / mine.ms) < 1e-9 * mine.vsPeer!.median);
    }
  });
}

test.run();
