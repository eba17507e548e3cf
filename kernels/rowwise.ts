// Fused row kernels over the last axis: softmax, log-softmax, layer norm, cross-entropy, forward and backward.
//
// One thread owns one row and makes a few passes over it (max, sum, write). On lavapipe a thread-per-row
// kernel beats a workgroup-per-row tree reduction because barriers and workgroup memory are slow there, and
// a row of a few KiB stays in the core's cache between passes. All inputs are read contiguous.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine, grid, type KernelSpec } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { normalizeAxis } from '../core/shape.ts';
import { recordOp } from './autodiff.ts';
import { contiguous } from './movement.ts';

const WG = 64;
const NEG_MAX = '-3.4028234663852886e38';

/** Dispatches a row kernel: one thread per row (rows may exceed one grid dimension). */
function launchRows<S extends KernelSpec>(key: string, spec: () => S, buffers: Record<string, GPUBuffer>, uniforms: Record<string, number>, rows: number): void {
  const engine = getEngine();
  const kernel = engine.kernel(key, spec);
  engine.dispatch(kernel, buffers as never, uniforms as never, grid(Math.ceil(rows / WG)));
}

const ROW_ID = `
  let row = gid.x + gid.y * nwg.x * ${WG}u;
  if (row >= u.rows) { return; }
  let base = row * u.D;`;
const ENTRY = `@compute @workgroup_size(${WG})\nfn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {`;

/** A contiguous f32 view of x as [rows, D] over its last axis. */
function rowsOf(op: string, x: Tensor): { src: Tensor; rows: number; D: number } {
  if (x.dtype !== 'f32') throw new DTypeError(`${op}: expects f32 input, got ${x.dtype}`);
  if (x.rank === 0) throw new ShapeError(`${op}: expects at least one axis, got a scalar`);
  const D = x.shape[x.rank - 1];
  return { src: contiguous(x), rows: D === 0 ? 0 : x.size / D, D };
}

// ---- softmax / log-softmax ----------------------------------------------------------------------------------

export function softmaxRaw(x: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  const { src, rows, D } = rowsOf(op, x);
  const out = Tensor.empty(x.shape);
  // Softmax stores exp(x − m) while summing, then rescales in place: one exp per element instead of two.
  const [accumulate, write] = log
    ? ['s += exp(x[xb + j] - m);', 'y[base + j] = x[xb + j] - m - log(s);']
    : ['let e = exp(x[xb + j] - m); y[base + j] = e; s += e;', 'y[base + j] *= inv;'];
  launchRows(
    `rows:${op}`,
    () => ({
      name: op,
      outputs: { y: 'f32' as const },
      inputs: { x: 'f32' as const },
      uniforms: { rows: 'u32', D: 'u32', off: 'u32' } as const,
      wgsl: `${ENTRY}${ROW_ID}
  let xb = u.off + base;
  var m = ${NEG_MAX};
  for (var j = 0u; j < u.D; j++) { m = max(m, x[xb + j]); }
  var s = 0.0;
  for (var j = 0u; j < u.D; j++) { ${accumulate} }
  let inv = 1.0 / s;
  for (var j = 0u; j < u.D; j++) { ${write} }
}`,
    }),
    { y: out.bufferFor(op), x: src.bufferFor(op) },
    { rows, D, off: src.offset },
    rows,
  );
  src.dispose();
  return out;
}

/** Backward of softmax (y = softmax(x)): dx = y·(g − Σ g·y); of log-softmax: dx = g − exp(y)·Σ g. */
export function softmaxBackwardRaw(y: Tensor, g: Tensor, log: boolean): Tensor {
  const op = log ? 'logSoftmaxBackward' : 'softmaxBackward';
  const gc = contiguous(g);
  const yc = contiguous(y);
  const rows = y.size / y.shape[y.rank - 1];
  const out = Tensor.empty(y.shape);
  const [reduce, write] = log
    ? ['s += g[gb + j];', 'dx[base + j] = g[gb + j] - exp(y[yb + j]) * s;']
    : ['s += g[gb + j] * y[yb + j];', 'dx[base + j] = y[yb + j] * (g[gb + j] - s);'];
  launchRows(
    `rows:${op}`,
    () => ({
      name: op,
      outputs: { dx: 'f32' as const },
      inputs: { y: 'f32' as const, g: 'f32' as const },
      uniforms: { rows: 'u32', D: 'u32', offY: 'u32', offG: 'u32' } as const,
      wgsl: `${ENTRY}${ROW_ID}
  let yb = u.offY + base;
  let gb = u.offG + base;
  var s = 0.0;
  for (var j = 0u; j < u.D; j++) { ${reduce} }
  for (var j = 0u; j < u.D; j++) { ${write} }
}`,
    }),
    { dx: out.bufferFor(op), y: yc.bufferFor(op), g: gc.bufferFor(op) },
    { rows, D: y.shape[y.rank - 1], offY: yc.offset, offG: gc.offset },
    rows,
  );
  gc.dispose();
  yc.dispose();
  return out;
}

function checkLastAxis(op: string, x: Tensor, axis: number): void {
  if (normalizeAxis(op, axis, x.rank) !== x.rank - 1) throw new ShapeError(`${op}: only the last axis is supported (got axis ${axis} of ${fmtShape(x.shape)}); permute first`);
}

/** Numerically stable softmax along the last axis. */
export function softmax(x: Tensor, axis = -1): Tensor {
  checkLastAxis('softmax', x, axis);
  const out = softmaxRaw(x, false);
  recordOp('softmax', [x], out, { y: out });
  return out;
}

/** log(softmax(x)) along the last axis, computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  checkLastAxis('logSoftmax', x, axis);
  const out = softmaxRaw(x, true);
  recordOp('logSoftmax', [x], out, { y: out });
  return out;
}

// ---- layer norm ---------------------------------------------------------------------------------------------

/** Forward: y = (x − mean) · rstd · weight + bias per row; also returns mean and rstd per row for backward. */
export function layerNormRaw(x: Tensor, weight: Tensor, bias: Tensor, eps: number): { y: Tensor; mean: Tensor; rstd: Tensor } {
  const op = 'layerNorm';
  const { src, rows, D } = rowsOf(op, x);
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p.rank !== 1 || p.shape[0] !== D || p.dtype !== 'f32') throw new ShapeError(`${op}: ${name} must be f32 of shape [${D}], got ${fmtShape(p.shape)} ${p.dtype}`);
  }
  const wc = contiguous(weight);
  const bc = contiguous(bias);
  const y = Tensor.empty(x.shape);
  const mean = Tensor.empty([rows]);
  const rstd = Tensor.empty([rows]);
  launchRows(
    'rows:layerNorm',
    () => ({
      name: op,
      outputs: { y: 'f32' as const, meanOut: 'f32' as const, rstdOut: 'f32' as const },
      inputs: { x: 'f32' as const, w: 'f32' as const, b: 'f32' as const },
      uniforms: { rows: 'u32', D: 'u32', off: 'u32', offW: 'u32', offB: 'u32', eps: 'f32' } as const,
      wgsl: `${ENTRY}${ROW_ID}
  let xb = u.off + base;
  var s = 0.0;
  for (var j = 0u; j < u.D; j++) { s += x[xb + j]; }
  let mu = s / f32(u.D);
  var v = 0.0;
  for (var j = 0u; j < u.D; j++) { let d = x[xb + j] - mu; v += d * d; }
  let r = inverseSqrt(v / f32(u.D) + u.eps);
  for (var j = 0u; j < u.D; j++) { y[base + j] = (x[xb + j] - mu) * r * w[u.offW + j] + b[u.offB + j]; }
  meanOut[row] = mu;
  rstdOut[row] = r;
}`,
    }),
    { y: y.bufferFor(op), meanOut: mean.bufferFor(op), rstdOut: rstd.bufferFor(op), x: src.bufferFor(op), w: wc.bufferFor(op), b: bc.bufferFor(op) },
    { rows, D, off: src.offset, offW: wc.offset, offB: bc.offset, eps },
    rows,
  );
  src.dispose();
  wc.dispose();
  bc.dispose();
  return { y, mean, rstd };
}

/**
 * Backward of layer norm. Per row (x̂ = (x − mean)·rstd, ĝ = g·weight):
 *   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂));
 * per column: dweight = Σ_rows g·x̂, dbias = Σ_rows g (a second kernel, one thread per column).
 */
export function layerNormBackwardRaw(g: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
  const op = 'layerNormBackward';
  const D = x.shape[x.rank - 1];
  const rows = x.size / D;
  const [gc, xc, wc] = [contiguous(g), contiguous(x), contiguous(weight)];
  const dx = Tensor.empty(x.shape);
  const dw = Tensor.empty([D]);
  const db = Tensor.empty([D]);
  const inputs = { g: 'f32', x: 'f32', w: 'f32', mean: 'f32', rstd: 'f32' } as const;
  const uniforms = { rows: 'u32', D: 'u32', offG: 'u32', offX: 'u32', offW: 'u32' } as const;
  const uniformValues = { rows, D, offG: gc.offset, offX: xc.offset, offW: wc.offset };
  const inputBuffers = { g: gc.bufferFor(op), x: xc.bufferFor(op), w: wc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op) };
  launchRows(
    'rows:layerNormBackward:dx',
    () => ({
      name: `${op}_dx`,
      outputs: { dx: 'f32' as const },
      inputs,
      uniforms,
      wgsl: `${ENTRY}${ROW_ID}
  let mu = mean[row];
  let r = rstd[row];
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = 0u; j < u.D; j++) {
    let gh = g[u.offG + base + j] * w[u.offW + j];
    sg += gh;
    sgx += gh * (x[u.offX + base + j] - mu) * r;
  }
  let n = f32(u.D);
  for (var j = 0u; j < u.D; j++) {
    let gh = g[u.offG + base + j] * w[u.offW + j];
    let xh = (x[u.offX + base + j] - mu) * r;
    dx[base + j] = r * (gh - sg / n - xh * sgx / n);
  }
}`,
    }),
    { dx: dx.bufferFor(op), ...inputBuffers },
    uniformValues,
    rows,
  );
  launchRows(
    'rows:layerNormBackward:dwdb',
    () => ({
      name: `${op}_dw_db`,
      outputs: { dw: 'f32' as const, db: 'f32' as const },
      inputs,
      uniforms,
      wgsl: `${ENTRY}
  let col = gid.x + gid.y * nwg.x * ${WG}u;
  if (col >= u.D) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var row = 0u; row < u.rows; row++) {
    let gv = g[u.offG + row * u.D + col];
    sw += gv * (x[u.offX + row * u.D + col] - mean[row]) * rstd[row];
    sb += gv;
  }
  dw[col] = sw;
  db[col] = sb;
}`,
    }),
    { dw: dw.bufferFor(op), db: db.bufferFor(op), ...inputBuffers },
    uniformValues,
    D,
  );
  gc.dispose();
  xc.dispose();
  wc.dispose();
  return { dx, dw, db };
}

/** Layer normalisation over the last axis with affine weight and bias (statistics in f32). */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const { y, mean, rstd } = layerNormRaw(x, weight, bias, eps);
  recordOp('layerNorm', [x, weight, bias], y, { x, weight, mean, rstd });
  mean.dispose();
  rstd.dispose();
  return y;
}

// ---- cross-entropy ------------------------------------------------------------------------------------------

function checkLabels(op: string, logits: Tensor, labels: Tensor): { rows: number; C: number } {
  if (logits.rank !== 2) throw new ShapeError(`${op}: logits must be [N, C], got ${fmtShape(logits.shape)}`);
  if (labels.dtype !== 'i32') throw new DTypeError(`${op}: labels must be i32, got ${labels.dtype}`);
  const [rows, C] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== rows) throw new ShapeError(`${op}: labels must be [${rows}] for logits ${fmtShape(logits.shape)}, got ${fmtShape(labels.shape)}`);
  const host = labels.hostData;
  if (host) {
    const bad = host.findIndex((v) => v < 0 || v >= C);
    if (bad >= 0) throw new RangeError(`${op}: label ${host[bad]} at position ${bad} is outside [0, ${C})`);
  }
  return { rows, C };
}

/** Per-row loss −log softmax(logits)[label]; an out-of-range label sets the engine's error flag. */
export function crossEntropyRaw(logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropy';
  const { rows, C } = checkLabels(op, logits, labels);
  const [x, lab] = [contiguous(logits), contiguous(labels)];
  const out = Tensor.empty([rows]);
  const engine = getEngine();
  launchRows(
    'rows:crossEntropy',
    () => ({
      name: op,
      outputs: { loss: 'f32' as const, flag: 'u32' as const },
      inputs: { x: 'f32' as const, labels: 'i32' as const },
      uniforms: { rows: 'u32', D: 'u32', off: 'u32', offL: 'u32', errCode: 'u32' } as const,
      wgsl: `${ENTRY}${ROW_ID}
  let xb = u.off + base;
  let label = labels[u.offL + row];
  if (label < 0 || u32(label) >= u.D) { flag[0] = u.errCode; loss[row] = bitcast<f32>(0x7fc00000u | (u.D & 0u)); return; }
  var m = ${NEG_MAX};
  for (var j = 0u; j < u.D; j++) { m = max(m, x[xb + j]); }
  var s = 0.0;
  for (var j = 0u; j < u.D; j++) { s += exp(x[xb + j] - m); }
  loss[row] = m + log(s) - x[xb + u32(label)];
}`,
    }),
    { loss: out.bufferFor(op), flag: engine.errorFlag, x: x.bufferFor(op), labels: lab.bufferFor(op) },
    { rows, D: C, off: x.offset, offL: lab.offset, errCode: engine.errorCode(`${op}: a label is outside [0, ${C})`) },
    rows,
  );
  x.dispose();
  lab.dispose();
  return out;
}

/** Backward: dlogits[r, j] = g[r] · (softmax(logits)[r, j] − [j = label[r]]). */
export function crossEntropyBackwardRaw(g: Tensor, logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropyBackward';
  const [rows, C] = logits.shape;
  const [x, lab, gc] = [contiguous(logits), contiguous(labels), contiguous(g)];
  const out = Tensor.empty(logits.shape);
  launchRows(
    'rows:crossEntropyBackward',
    () => ({
      name: op,
      outputs: { dx: 'f32' as const },
      inputs: { x: 'f32' as const, labels: 'i32' as const, g: 'f32' as const },
      uniforms: { rows: 'u32', D: 'u32', off: 'u32', offL: 'u32', offG: 'u32' } as const,
      wgsl: `${ENTRY}${ROW_ID}
  let xb = u.off + base;
  let label = u32(labels[u.offL + row]);
  var m = ${NEG_MAX};
  for (var j = 0u; j < u.D; j++) { m = max(m, x[xb + j]); }
  var s = 0.0;
  for (var j = 0u; j < u.D; j++) { s += exp(x[xb + j] - m); }
  let scale = g[u.offG + row] / s;
  for (var j = 0u; j < u.D; j++) {
    dx[base + j] = exp(x[xb + j] - m) * scale - select(0.0, g[u.offG + row], j == label);
  }
}`,
    }),
    { dx: out.bufferFor(op), x: x.bufferFor(op), labels: lab.bufferFor(op), g: gc.bufferFor(op) },
    { rows, D: C, off: x.offset, offL: lab.offset, offG: gc.offset },
    rows,
  );
  x.dispose();
  lab.dispose();
  gc.dispose();
  return out;
}

/** Per-example cross-entropy of logits [N, C] against integer labels [N]; returns [N]. */
export function crossEntropyPerRow(logits: Tensor, labels: Tensor): Tensor {
  const out = crossEntropyRaw(logits, labels);
  recordOp('crossEntropy', [logits, null], out, { logits, labels });
  return out;
}
