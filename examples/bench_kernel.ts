// A kernel micro-benchmark on your own shape, validated before it is timed:
//
//   node scripts/run.mjs examples/bench_kernel.ts --op matmul --shape 512,768,3072
//   node scripts/run.mjs examples/bench_kernel.ts --op softmax --shape 4096,1000
//   node scripts/run.mjs examples/bench_kernel.ts --op layernorm --shape 1024,768
//
// matmul's shape is M,K,N; the row ops take rows,width. The output is compared with the float64 reference
// (kernels/reference.ts) on sampled rows, then timed with bench/harness.ts (median wall clock per launch,
// GPU time from timestamp queries alongside) and reported in GFLOP/s or GB/s of compulsory traffic.
import { parseArgs } from 'node:util';
import * as T from '../ops/index.ts';
import * as R from '../kernels/reference.ts';
import { timeOurs, validate } from '../bench/harness.ts';

const { values } = parseArgs({ options: { op: { type: 'string', default: 'matmul' }, shape: { type: 'string', default: '1024,1024,1024' } } });
const dims = values.shape!.split(',').map(Number);
const op = values.op!;
if (!['matmul', 'softmax', 'layernorm'].includes(op)) {
  console.error(`bench_kernel: --op must be matmul, softmax or layernorm, got '${op}'`);
  process.exit(2);
}
if (dims.some((d) => !Number.isInteger(d) || d < 1) || dims.length !== (op === 'matmul' ? 3 : 2)) {
  console.error(`bench_kernel: --shape must be ${op === 'matmul' ? 'M,K,N' : 'rows,width'} positive integers, got '${values.shape}'`);
  process.exit(2);
}
await T.init();
console.log(`adapter: ${T.gpu().name}`);

/** Rows [begin, end) of a host matrix as a float64 reference array. */
const rowsOf = (data: Float32Array | Int32Array, width: number, begin: number, end: number) =>
  new R.Nd([end - begin, width], Float64Array.from(data.subarray(begin * width, end * width)));
const sampleRows = (rows: number) => Math.min(rows, 16);

let run: () => T.Tensor;
let work: number;
let unit: 'GFLOP/s' | 'GB/s';
if (op === 'matmul') {
  const [M, K, N] = dims;
  const a = T.keep(T.randNormal([M, K]));
  const b = T.keep(T.randNormal([K, N]));
  run = () => T.matmul(a, b);
  const got = await run().data();
  const want = R.matmul(rowsOf(await a.data(), K, 0, sampleRows(M)), new R.Nd([K, N], Float64Array.from(await b.data())));
  validate('matmul', Array.from(want.data, (w, i) => ({ got: got[i], want: w })), 1e-4 * Math.sqrt(K));
  work = 2 * M * K * N;
  unit = 'GFLOP/s';
} else {
  const [rows, width] = dims;
  const x = T.keep(T.randNormal([rows, width], 0, 3));
  const w = T.keep(T.randNormal([width]));
  const b = T.keep(T.randNormal([width]));
  run = op === 'softmax' ? () => T.softmax(x) : () => T.layerNorm(x, w, b);
  const got = await run().data();
  const head = rowsOf(await x.data(), width, 0, sampleRows(rows));
  const want =
    op === 'softmax'
      ? R.softmax(head)
      : R.layerNorm(
          head,
          new R.Nd([width], Float64Array.from(await w.data())),
          new R.Nd([width], Float64Array.from(await b.data())),
          1e-5,
        );
  validate(op, Array.from(want.data, (v, i) => ({ got: got[i], want: v })), 1e-5);
  work = 2 * rows * width * 4; // read the input once, write the output once
  unit = 'GB/s';
}

const { ms, gpuMs } = await timeOurs(run, { inner: 5, reps: 7 });
console.log(
  `${op} [${dims.join(', ')}]: validated; ${ms.toFixed(3)} ms per launch (GPU ${gpuMs?.toFixed(3) ?? 'n/a'} ms), ` +
    `${(work / ms / 1e6).toFixed(2)} ${unit}`,
);
T.closeGpu();
