// Cross-entropy with integer labels over the last axis of [N, C] logits, forward and backward:
//   loss[r] = −log softmax(logits[r])[label[r]] = max + log Σ exp(x − max) − x[label],
//   dlogits[r, j] = g[r] · (softmax(logits[r])[j] − [j = label[r]]).
// A thread per row (kernels/rows.ts), vec4 rows where they allow. The loss is f32 whatever the logits' storage
// (open_clip's amp upcasts them too): f16 logits are read as f32 and dlogits rounded once.
// A label outside [0, C) read on the GPU sets the engine's error flag: the next readback throws, naming it.
import { DTypeError, IndexError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';
import { ROW_ID, launchRows, prelude, storageOf, widthFor } from './rows.ts';
import { F32_MAX } from './wgsl.ts';

function checkLabels(op: string, logits: Tensor, labels: Tensor): { rows: number; C: number } {
  if (logits.rank !== 2) throw new ShapeError(`${op}: logits must be [N, C], got ${fmtShape(logits.shape)}`);
  if (logits.dtype === 'i32') throw new DTypeError(`${op}: logits must be f32 or f16, got i32`);
  if (labels.dtype !== 'i32') throw new DTypeError(`${op}: labels must be i32, got ${labels.dtype}`);
  const [rows, C] = logits.shape;
  if (labels.rank !== 1 || labels.shape[0] !== rows) {
    throw new ShapeError(`${op}: labels must be [${rows}] for logits ${fmtShape(logits.shape)}, got ${fmtShape(labels.shape)}`);
  }
  const host = labels.hostData;
  if (host) {
    const bad = host.findIndex((v) => v < 0 || v >= C);
    if (bad >= 0) throw new IndexError(`${op}: label ${host[bad]} at position ${bad} is outside [0, ${C})`);
  }
  return { rows, C };
}

/** Per-row loss −log softmax(logits)[label]. */
export function crossEntropyRaw(logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropy';
  const { rows, C } = checkLabels(op, logits, labels);
  const [x, lab] = [contiguousCopy(logits), contiguousCopy(labels)];
  const out = Tensor.empty([rows]);
  const engine = getEngine();
  const w = widthFor(C, x.offset);
  const name = `${op}${w === 4 ? '_vec4' : ''}${logits.dtype === 'f16' ? '_f16' : ''}`;
  launchRows(
    name,
    () => ({
      name,
      outputs: { loss: 'f32' as const, flag: 'u32' as const },
      inputs: { x: storageOf(w, logits.dtype), labels: 'i32' as const },
      uniforms: { rows: 'u32', W: 'u32', D: 'u32', off: 'u32', offL: 'u32', errCode: 'u32' } as const,
      wgsl: `${prelude(w)}
${ROW_ID}
  let xb = u.off + base;
  let label = labels[u.offL + row];
  if (label < 0 || u32(label) >= u.D) { flag[0] = u.errCode; loss[row] = bitcast<f32>(0x7fc00000u | (u.D & 0u)); return; }
  var mv = V(-${F32_MAX});
  for (var j = 0u; j < u.W; j++) { mv = max(mv, V(x[xb + j])); }
  let m = hmax(mv);
  var sv = V(0.0);
  var picked = V(0.0);
  for (var j = 0u; j < u.W; j++) { let v = V(x[xb + j]); sv += exp(v - m); picked += onehot(j, u32(label)) * v; }
  loss[row] = m + log(hsum(sv)) - hsum(picked);
}`,
    }),
    { loss: out.bufferFor(op), flag: engine.errorFlag, x: x.bufferFor(op), labels: lab.bufferFor(op) },
    { rows, W: C / w, D: C, off: x.offset / w, offL: lab.offset, errCode: engine.errorCode(`${op}: a label is outside [0, ${C})`) },
    rows,
  );
  x.dispose();
  lab.dispose();
  return out;
}

/** Backward: dlogits[r, j] = g[r] · (softmax(logits)[r, j] − [j = label[r]]). */
export function crossEntropyBackwardRaw(g: Tensor, logits: Tensor, labels: Tensor): Tensor {
  const op = 'crossEntropyBackward';
  if (g.dtype !== 'f32') throw new DTypeError(`${op}: the loss gradient must be f32 (the loss is), got ${g.dtype}`);
  const [rows, C] = logits.shape;
  const [x, lab, gc] = [contiguousCopy(logits), contiguousCopy(labels), contiguousCopy(g)];
  const out = Tensor.empty(logits.shape, logits.dtype);
  const w = widthFor(C, x.offset);
  const name = `${op}${w === 4 ? '_vec4' : ''}${logits.dtype === 'f16' ? '_f16' : ''}`;
  launchRows(
    name,
    () => ({
      name,
      outputs: { dx: storageOf(w, logits.dtype) },
      inputs: { x: storageOf(w, logits.dtype), labels: 'i32' as const, g: 'f32' as const },
      uniforms: { rows: 'u32', W: 'u32', off: 'u32', offL: 'u32', offG: 'u32' } as const,
      wgsl: `${prelude(w)}
${ROW_ID}
  let xb = u.off + base;
  let label = u32(labels[u.offL + row]);
  var mv = V(-${F32_MAX});
  for (var j = 0u; j < u.W; j++) { mv = max(mv, V(x[xb + j])); }
  let m = hmax(mv);
  var sv = V(0.0);
  for (var j = 0u; j < u.W; j++) { sv += exp(V(x[xb + j]) - m); }
  let gr = g[u.offG + row];
  let scale = gr / hsum(sv);
  for (var j = 0u; j < u.W; j++) { dx[base + j] = dx_t(exp(V(x[xb + j]) - m) * scale - onehot(j, label) * gr); }
}`,
    }),
    { dx: out.bufferFor(op), x: x.bufferFor(op), labels: lab.bufferFor(op), g: gc.bufferFor(op) },
    { rows, W: C / w, off: x.offset / w, offL: lab.offset, offG: gc.offset },
    rows,
  );
  x.dispose();
  lab.dispose();
  gc.dispose();
  return out;
}
