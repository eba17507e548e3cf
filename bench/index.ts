// `npm run bench [-- --quick] [-- --json] [-- --no-peer] [-- --only matmul]`: every kernel validated, then
// timed, next to tfjs-webgpu on the same adapter (the training step next to PyTorch on the CPU, if installed).
// Results go to stdout (a table, or JSON with --json). Opt-in suites (full-size: ViT-B/32, hours on a CPU
// adapter) run only when named with --only.
import * as T from '../ops/index.ts';
import { benchMatmul } from './matmul.ts';
import { benchMemoryBound } from './memorybound.ts';
import { benchNn } from './nn.ts';
import { benchAttention } from './attention.ts';
import { benchTrain } from './train.ts';
import { benchHost } from './host.ts';
import { benchFullSize } from './fullsize.ts';
import type { Result } from './harness.ts';
import { useTuning } from '../kernels/io/tuning.ts';

/** The command line, for --help. */
export const USAGE =
  'usage: clipgpu bench [--quick] [--json] [--no-peer] [--only matmul|memory-bound|nn|attention|train-step|host-overhead|full-size]' +
  '   (tfjs-webgpu, when installed, is timed beside ours; full-size runs only when named)';

/** Suites too long for a plain `clipgpu bench`: they run only when --only names them. */
const OPT_IN = ['full-size'];

/** Whether the suite `name` runs under `--only only` (null: no --only, every suite but the opt-in ones). */
export const runsSuite = (name: string, only: string | null): boolean => (only ? name.startsWith(only) : !OPT_IN.includes(name));

/** `clipgpu bench [--quick] [--json] [--no-peer] [--only SUITE]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  const args = new Set(argv);
  const quick = args.has('--quick');
  const peer = !args.has('--no-peer');
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : null;

  await T.init();
  const adapter = T.gpu().name;
  const log = (s: string) => (args.has('--json') ? process.stderr.write(`${s}\n`) : console.log(s));
  log(`adapter: ${adapter}`);
  // The kernel choices measured for this adapter (npm run tune; measured now if none are cached).
  const tuning = await useTuning(log);
  log(tuning ? 'kernel variants: tuned for this adapter (npm run tune -- --show lists them)' : 'kernel variants: the fixed defaults (CLIPGPU_TUNE=off)');

  const suites: [string, () => Promise<Result[]>][] = [
    ['matmul', () => benchMatmul({ quick, peer, log })],
    ['memory-bound', () => benchMemoryBound({ quick, peer })],
    ['nn', () => benchNn({ quick, peer })],
    ['attention', () => benchAttention({ quick, peer })],
    ['train-step', () => benchTrain({ quick, peer })],
    ['host-overhead', () => benchHost({ quick })],
    ['full-size', () => benchFullSize({ peer, log, ...(quick ? { rounds: 1, fitBatch: null } : {}) })],
  ];
  const results: Result[] = [];
  for (const [name, run] of suites) {
    if (!runsSuite(name, only)) continue;
    log(`running ${name}…`);
    results.push(...(await run()));
  }

  if (args.has('--json')) {
    console.log(JSON.stringify({ adapter, date: new Date().toISOString(), results }, null, 1));
  } else {
    // The peer of a row: tfjs-webgpu for kernels, PyTorch on the CPU for the training step.
    const isPeer = (r: Result) => !r.impl.startsWith('ours');
    const rows = [['kernel', 'shape', 'impl', 'wall ms', 'rate', 'vs peer', 'gpu ms']];
    for (const r of results) {
      if (r.run) continue; // long runs have a table of their own
      const other = results.find((o) => o.kernel === r.kernel && o.shape === r.shape && isPeer(o));
      const ratio = r.vsPeer
        ? `${r.vsPeer.median.toFixed(2)}× (${r.vsPeer.lo.toFixed(2)}–${r.vsPeer.hi.toFixed(2)})`
        : other && !isPeer(r) && !r.impl.endsWith('f16')
          ? `${(r.rate / other.rate).toFixed(2)}×`
          : '';
      rows.push([r.kernel, r.shape, r.impl, r.ms.toFixed(3), `${r.rate.toFixed(2)} ${r.unit}`, ratio, r.gpuMs?.toFixed(3) ?? '']);
    }
    printTable(rows);
    const host = results.filter((r) => r.host);
    if (host.length) {
      console.log('\nhost overhead (JavaScript per step before the GPU is awaited, queue submits apart; medians):');
      const hostRows = [['step', 'impl', 'dispatches', 'submits', 'JS ms', 'µs/dispatch', 'submit ms', 'share of wall', 'wall ms', 'first step ms']];
      for (const r of host) {
        const h = r.host!;
        hostRows.push([r.shape, r.impl, String(h.dispatches), String(h.submits), h.recordMs.toFixed(1), h.usPerDispatch.toFixed(1),
          h.submitMs.toFixed(1), `${(100 * h.share).toFixed(0)}%`, r.ms.toFixed(1), h.firstStepMs?.toFixed(0) ?? '']);
      }
      printTable(hostRows);
    }
    const runs = results.filter((r) => r.run);
    if (runs.length) {
      console.log('\nfull size (median of the timed steps, each one in seconds; vs PyTorch: the median and range of the per-round ratios; medians of an even count are the mean of the middle two):');
      const runRows = [['step', 'shape', 'impl', 'images/s', 'steps s', 'vs PyTorch', 'first step s', 'peak GPU MiB', 'loss first → last']];
      for (const r of runs) {
        const run = r.run!;
        const seconds = (ms: number) => (ms / 1000).toFixed(2);
        const vs = r.vsPeer ? `${r.vsPeer.median.toFixed(2)}× (${r.vsPeer.lo.toFixed(2)}–${r.vsPeer.hi.toFixed(2)})` : '';
        runRows.push([r.kernel, r.shape, r.impl, run.error ? `failed: ${run.error}` : r.rate.toFixed(3), run.stepsMs.map(seconds).join(' '), vs,
          Number.isNaN(run.firstStepMs) ? '' : seconds(run.firstStepMs), run.peakBytes === null ? '' : (run.peakBytes / 2 ** 20).toFixed(0),
          run.loss ? `${run.loss[0].toFixed(4)} → ${run.loss[1].toFixed(4)}` : '']);
      }
      printTable(runRows);
    }
  }
  T.closeGpu();
  process.exit(0);
}

/** Prints rows as columns padded to their widest cell. */
function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i])).join('  '));
}
