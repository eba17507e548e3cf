// Layer norm over the last axis, forward and backward (Ba et al., 2016): y = (x − mean)·rstd·weight + bias,
// rstd = 1/√(var + eps), statistics per row in f32 whatever the storage.
//
// Forward: a thread per row (three passes: mean, variance, write), or a subgroup per row on wide rows where
// kernels/policy.ts rowWalk says so (on lavapipe the two tie, so the thread is the default). It also writes the
// row's mean and rstd, which the backward reuses instead of recomputing.
// Backward: dx per row (a thread per row, two passes), dweight and dbias per column (a thread per column
// walking every row: coalesced across threads, no atomics).
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';
import { rowWalk, type RowPath } from './policy.ts';
import { ROW_ID, THREAD_WALK, WG, launchRows, prelude, rowsOf, storageOf, subgroupWalk, widthFor } from './rows.ts';
import { perItemEntry } from './wgsl.ts';

/** Forward: y = (x − mean) · rstd · weight + bias per row; also returns mean and rstd per row for backward. */
export function layerNormRaw(x: Tensor, weight: Tensor, bias: Tensor, eps: number, path?: RowPath): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const op = 'layerNorm';
  const { src, rows, D } = rowsOf(op, x, true);
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p.rank !== 1 || p.shape[0] !== D || (p.dtype !== 'f32' && p.dtype !== 'f16')) {
      throw new ShapeError(`${op}: ${name} must be f32 or f16 of shape [${D}], got ${fmtShape(p.shape)} ${p.dtype}`);
    }
  }
  const wc = contiguousCopy(weight);
  const bc = contiguousCopy(bias);
  const y = Tensor.empty(x.shape, x.dtype);
  const mean = Tensor.empty([rows]);
  const rstd = Tensor.empty([rows]);
  const w = widthFor(D, src.offset, wc.offset, bc.offset);
  const { lanes } = rowWalk('layerNorm', D, w, path);
  const walk = lanes ? subgroupWalk(lanes) : THREAD_WALK;
  const loop = 'for (var j = first; j < u.W; j += step)';
  const half = [x, wc, bc].some((t) => t.dtype === 'f16');
  const dtypeSuffix = half ? `_x${x.dtype.slice(1)}_w${wc.dtype.slice(1)}_b${bc.dtype.slice(1)}` : '';
  const name = `${op}${w === 4 ? '_vec4' : ''}${lanes ? `_subgroup${lanes}` : ''}${dtypeSuffix}`;
  launchRows(
    name,
    () => ({
      name,
      outputs: { y: storageOf(w, x.dtype), meanOut: 'f32' as const, rstdOut: 'f32' as const },
      inputs: { x: storageOf(w, x.dtype), w: storageOf(w, wc.dtype), b: storageOf(w, bc.dtype) },
      uniforms: { rows: 'u32', W: 'u32', D: 'u32', off: 'u32', offW: 'u32', offB: 'u32', eps: 'f32' } as const,
      wgsl: `${prelude(w)}
${walk.entry}
  let xb = u.off + base;
  var sv = V(0.0);
  ${loop} { sv += V(x[xb + j]); }
  let mu = ${walk.sum('hsum(sv)')} / f32(u.D);
  var vv = V(0.0);
  ${loop} { let d = V(x[xb + j]) - mu; vv += d * d; }
  let r = inverseSqrt(${walk.sum('hsum(vv)')} / f32(u.D) + u.eps);
  ${loop} { y[base + j] = y_t((V(x[xb + j]) - mu) * r * V(w[u.offW + j]) + V(b[u.offB + j])); }
  meanOut[row] = mu;
  rstdOut[row] = r;
}`,
      directives: walk.directives,
    }),
    { y: y.bufferFor(op), meanOut: mean.bufferFor(op), rstdOut: rstd.bufferFor(op), x: src.bufferFor(op), w: wc.bufferFor(op), b: bc.bufferFor(op) },
    { rows, W: D / w, D, off: src.offset / w, offW: wc.offset / w, offB: bc.offset / w, eps },
    lanes ? rows * lanes : rows,
  );
  src.dispose();
  wc.dispose();
  bc.dispose();
  return { y, mean, rstd };
}

/**
 * Backward. Per row (x̂ = (x − mean)·rstd, ĝ = g·weight):
 *   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂));
 * per column: dweight = Σ_rows g·x̂, dbias = Σ_rows g. f16 g, x or weight are read as f32; dx (x's dtype) and
 * dw, db (the weight's) are rounded once at the store.
 */
export function layerNormBackwardRaw(g: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
  const op = 'layerNormBackward';
  if (g.dtype !== x.dtype) throw new DTypeError(`${op}: the input and its gradient must share a dtype, got ${x.dtype} and ${g.dtype}`);
  const D = x.shape[x.rank - 1];
  const rows = x.size / D;
  const [gc, xc, wc] = [contiguousCopy(g), contiguousCopy(x), contiguousCopy(weight)];
  const dx = Tensor.empty(x.shape, x.dtype);
  const dw = Tensor.empty([D], weight.dtype);
  const db = Tensor.empty([D], weight.dtype);
  const w = widthFor(D, gc.offset, xc.offset, wc.offset);
  const inputs = { g: storageOf(w, g.dtype), x: storageOf(w, x.dtype), w: storageOf(w, weight.dtype), mean: 'f32' as const, rstd: 'f32' as const };
  const suffix = `${w === 4 ? '_vec4' : ''}${[g, x, weight].some((t) => t.dtype === 'f16') ? `_x${x.dtype.slice(1)}_w${weight.dtype.slice(1)}` : ''}`;
  const uniforms = { rows: 'u32', W: 'u32', D: 'u32', offG: 'u32', offX: 'u32', offW: 'u32' } as const;
  const uniformValues = { rows, W: D / w, D, offG: gc.offset / w, offX: xc.offset / w, offW: wc.offset / w };
  const inputBuffers = { g: gc.bufferFor(op), x: xc.bufferFor(op), w: wc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op) };
  const dxName = `${op}_dx${suffix}`;
  launchRows(
    dxName,
    () => ({
      name: dxName,
      outputs: { dx: storageOf(w, x.dtype) },
      inputs,
      uniforms,
      wgsl: `${prelude(w)}
${ROW_ID}
  let mu = mean[row];
  let r = rstd[row];
  var sg = V(0.0);
  var sgx = V(0.0);
  for (var j = 0u; j < u.W; j++) {
    let gh = V(g[u.offG + base + j]) * V(w[u.offW + j]);
    sg += gh;
    sgx += gh * (V(x[u.offX + base + j]) - mu) * r;
  }
  let n = f32(u.D);
  let mg = hsum(sg) / n;
  let mgx = hsum(sgx) / n;
  for (var j = 0u; j < u.W; j++) {
    let gh = V(g[u.offG + base + j]) * V(w[u.offW + j]);
    let xh = (V(x[u.offX + base + j]) - mu) * r;
    dx[base + j] = dx_t(r * (gh - mg - xh * mgx));
  }
}`,
    }),
    { dx: dx.bufferFor(op), ...inputBuffers },
    uniformValues,
    rows,
  );
  const dwName = `${op}_dw_db${suffix}`;
  launchRows(
    dwName,
    () => ({
      name: dwName,
      outputs: { dw: storageOf(w, weight.dtype), db: storageOf(w, weight.dtype) },
      inputs,
      uniforms,
      wgsl: `${prelude(w)}
${perItemEntry(WG, 'col')}
  if (col >= u.W) { return; }
  var sw = V(0.0);
  var sb = V(0.0);
  for (var row = 0u; row < u.rows; row++) {
    let gv = V(g[u.offG + row * u.W + col]);
    sw += gv * (V(x[u.offX + row * u.W + col]) - mean[row]) * rstd[row];
    sb += gv;
  }
  dw[col] = dw_t(sw);
  db[col] = db_t(sb);
}`,
    }),
    { dw: dw.bufferFor(op), db: db.bufferFor(op), ...inputBuffers },
    uniformValues,
    D / w,
  );
  gc.dispose();
  xc.dispose();
  wc.dispose();
  return { dx, dw, db };
}
