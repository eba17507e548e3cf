// Softmax and log-softmax over the last axis, forward and backward: y = exp(x − max) / Σ exp(x − max), and
// log-softmax x − logsumexp(x).
//
// Three walks (kernels/rows.ts; kernels/policy.ts rowWalk picks one per row width):
//   streaming, a thread per row   three passes: the max, then exp(x − m) stored while summing, then an in-place
//                                  rescale — one exp per element instead of two (log-softmax: max, sum, write).
//   streaming, a subgroup per row the same passes, lanes on neighbouring vec4s, subgroupMax / subgroupAdd.
//   registers                     a subgroup whose lanes each load their share of the row once into registers:
//                                  the row is read once and written once. The default where rows fit (8.0 vs
//                                  10.9 ms at [4096, 1024] on lavapipe); one pipeline per row width.
// f16 rows: read as f32, statistics in f32, each store rounded once.
import { DTypeError } from '../core/errors.ts';
import { F32_MAX, type Width } from './wgsl.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';
import { rowWalk, type RowPath } from './policy.ts';
import { ROW_ID, THREAD_WALK, launchRows, prelude, rowsOf, storageOf, subgroupWalk, widthFor, type Walk } from './rows.ts';

/** softmax(x) (log-softmax with `log`) over the last axis; `path` forces a walk (benchmarks), else the policy's. */
export function softmaxRaw(x: Tensor, log: boolean, path?: RowPath): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const { src, rows, D } = rowsOf(op, x, true);
  const out = Tensor.empty(x.shape, x.dtype);
  const w = widthFor(D, src.offset);
  const { chunks, lanes } = rowWalk('softmax', D, w, path);
  const walk = lanes ? subgroupWalk(lanes) : THREAD_WALK;
  const walkName = chunks !== null ? `_registers${lanes}x${chunks}` : lanes ? `_subgroup${lanes}` : '';
  const name = `${op}${w === 4 ? '_vec4' : ''}${walkName}${x.dtype === 'f16' ? '_f16' : ''}`;
  launchRows(
    name,
    () => ({
      name,
      outputs: { y: storageOf(w, x.dtype) },
      inputs: { x: storageOf(w, x.dtype) },
      uniforms: { rows: 'u32', W: 'u32', off: 'u32' } as const,
      wgsl: chunks !== null ? registerSoftmax(w, chunks, walk, log) : streamingSoftmax(w, walk, log),
      directives: walk.directives,
    }),
    { y: out.bufferFor(op), x: src.bufferFor(op) },
    { rows, W: D / w, off: src.offset / w },
    lanes ? rows * lanes : rows,
  );
  src.dispose();
  return out;
}

/** The streaming walks: a pass for the maximum, then the sum (and for softmax the stored exponentials), then the write. */
function streamingSoftmax(w: Width, walk: Walk, log: boolean): string {
  const loop = 'for (var j = first; j < u.W; j += step)';
  const body = log
    ? `var sv = V(0.0);
  ${loop} { sv += exp(V(x[xb + j]) - m); }
  let lse = m + log(${walk.sum('hsum(sv)')});
  ${loop} { y[base + j] = y_t(V(x[xb + j]) - lse); }`
    : `var sv = V(0.0);
  ${loop} { let e = exp(V(x[xb + j]) - m); y[base + j] = y_t(e); sv += e; }
  let inv = 1.0 / ${walk.sum('hsum(sv)')};
  ${loop} { y[base + j] = y_t(V(y[base + j]) * inv); }`;
  return `${prelude(w)}
${walk.entry}
  let xb = u.off + base;
  var mv = V(-${F32_MAX});
  ${loop} { mv = max(mv, V(x[xb + j])); }
  let m = ${walk.max('hmax(mv)')};
  ${body}
}`;
}

/**
 * The register walk: each lane loads its `chunks` values of V once; the maximum, the exponentials and their
 * sum are taken there (the chunk count is a compile-time constant, so the array stays in registers).
 */
function registerSoftmax(w: Width, chunks: number, walk: Walk, log: boolean): string {
  const each = `for (var c = 0u; c < ${chunks}u; c++)`;
  const finish = log
    ? `${each} { sv += exp(r[c] - m); }
  let lse = m + log(${walk.sum('hsum(sv)')});
  ${each} { y[base + first + c * step] = y_t(r[c] - lse); }`
    : `${each} { let e = exp(r[c] - m); r[c] = e; sv += e; }
  let inv = 1.0 / ${walk.sum('hsum(sv)')};
  ${each} { y[base + first + c * step] = y_t(r[c] * inv); }`;
  return `${prelude(w)}
${walk.entry}
  let xb = u.off + base;
  var r: array<V, ${chunks}>;
  var mv = V(-${F32_MAX});
  ${each} { let v = V(x[xb + first + c * step]); r[c] = v; mv = max(mv, v); }
  let m = ${walk.max('hmax(mv)')};
  var sv = V(0.0);
  ${finish}
}`;
}

/**
 * Backward of softmax (y = softmax(x)): dx = y·(g − Σ g·y); of log-softmax: dx = g − exp(y)·Σ g. A thread per
 * row; on f16 y and g the sum and the arithmetic are f32 and dx is rounded once.
 */
export function softmaxBackwardRaw(y: Tensor, g: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmaxBackward' : 'softmaxBackward';
  if (y.dtype !== g.dtype) throw new DTypeError(`${op}: the output and its gradient must share a dtype, got ${y.dtype} and ${g.dtype}`);
  const gc = contiguousCopy(g);
  const yc = contiguousCopy(y);
  const D = y.shape[y.rank - 1];
  const rows = y.size / D;
  const out = Tensor.empty(y.shape, y.dtype);
  const w = widthFor(D, gc.offset, yc.offset);
  const [reduce, write] = log
    ? ['sv += V(g[gb + j]);', 'dx[base + j] = dx_t(V(g[gb + j]) - exp(V(y[yb + j])) * s);']
    : ['sv += V(g[gb + j]) * V(y[yb + j]);', 'dx[base + j] = dx_t(V(y[yb + j]) * (V(g[gb + j]) - s));'];
  const name = `${op}${w === 4 ? '_vec4' : ''}${y.dtype === 'f16' ? '_f16' : ''}`;
  launchRows(
    name,
    () => ({
      name,
      outputs: { dx: storageOf(w, y.dtype) },
      inputs: { y: storageOf(w, y.dtype), g: storageOf(w, y.dtype) },
      uniforms: { rows: 'u32', W: 'u32', offY: 'u32', offG: 'u32' } as const,
      wgsl: `${prelude(w)}
${ROW_ID}
  let yb = u.offY + base;
  let gb = u.offG + base;
  var sv = V(0.0);
  for (var j = 0u; j < u.W; j++) { ${reduce} }
  let s = hsum(sv);
  for (var j = 0u; j < u.W; j++) { ${write} }
}`,
    }),
    { dx: out.bufferFor(op), y: yc.bufferFor(op), g: gc.bufferFor(op) },
    { rows, W: D / w, offY: yc.offset / w, offG: gc.offset / w },
    rows,
  );
  gc.dispose();
  yc.dispose();
  return out;
}
