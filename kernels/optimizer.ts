// Fused optimizer updates: one dispatch per parameter tensor reads the gradient and updates the parameter
// and its state in place (instead of a dispatch per elementwise step of the update formula). vec4 when the
// tensor's size allows. Formulas follow torch.optim exactly (see nn/optim.ts).
import { ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { grid, perItemEntry } from './wgsl.ts';
import { Tensor } from '../core/tensor.ts';

const WG = 64;

function check(op: string, p: Tensor, ...others: Tensor[]): void {
  for (const t of [p, ...others]) {
    if (!t.isContiguous || t.dtype !== 'f32' || t.size !== p.size) {
      throw new ShapeError(`${op}: tensors must be contiguous f32 of ${p.size} elements, got ${fmtShape(t.shape)} ${t.dtype}`);
    }
  }
}

const width = (...ts: Tensor[]) => (ts.every((t) => t.size % 4 === 0 && t.offset % 4 === 0) ? 4 : 1);
/** A hyperparameter given as a value, or as a function of the optimizer's state read when the update is issued. */
export type Scalar = number | (() => number);
const valueOf = (s: Scalar) => (typeof s === 'function' ? s() : s);

const ty = (w: number) => (w === 4 ? ('vec4<f32>' as const) : ('f32' as const));

/** AdamW's hyperparameters as a kernel takes them: the learning rate and step may be functions (read at issue). */
type AdamWHyper = { lr: Scalar; beta1: number; beta2: number; eps: number; weightDecay: number; step: Scalar };

/** The hyperparameter uniforms both AdamW kernels declare, after their own offsets. */
const ADAMW_UNIFORMS = { decay: 'f32', beta1: 'f32', beta2: 'f32', stepSize: 'f32', bc2Sqrt: 'f32', eps: 'f32' } as const;

/**
 * Their values. Functions of the learning rate and step: a captured step (core/capture.ts) re-reads them at each
 * replay.
 */
function adamwUniforms(h: AdamWHyper) {
  return {
    decay: () => 1 - valueOf(h.lr) * h.weightDecay,
    beta1: h.beta1,
    beta2: h.beta2,
    stepSize: () => valueOf(h.lr) / (1 - h.beta1 ** valueOf(h.step)),
    bc2Sqrt: () => Math.sqrt(1 - h.beta2 ** valueOf(h.step)),
    eps: h.eps,
  };
}

/**
 * AdamW (decoupled weight decay), PyTorch's form:
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − (lr / bc1) · m / (√v / √bc2 + eps),  bc_i = 1 − β_i^step.
 */
export function adamwUpdate(
  p: Tensor,
  g: Tensor,
  m: Tensor,
  v: Tensor,
  h: AdamWHyper,
): void {
  const op = 'adamw';
  check(op, p, g, m, v);
  const w = width(p, g, m, v);
  const kernel = getEngine().kernel(`optim:adamw:${w}`, () => ({
    name: `adamw${w === 4 ? '_vec4' : ''}`,
    outputs: { p: ty(w), m: ty(w), v: ty(w) },
    inputs: { g: ty(w) },
    uniforms: { n: 'u32', offP: 'u32', offG: 'u32', offM: 'u32', offV: 'u32', ...ADAMW_UNIFORMS } as const,
    wgsl: `
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  let grad = g[u.offG + i];
  let mi = u.beta1 * m[u.offM + i] + (1.0 - u.beta1) * grad;
  let vi = u.beta2 * v[u.offV + i] + (1.0 - u.beta2) * grad * grad;
  m[u.offM + i] = mi;
  v[u.offV + i] = vi;
  p[u.offP + i] = p[u.offP + i] * u.decay - u.stepSize * mi / (sqrt(vi) / u.bc2Sqrt + u.eps);
}`,
  }));
  const n = p.size / w;
  getEngine().dispatch(
    kernel,
    { p: p.bufferFor(op), m: m.bufferFor(op), v: v.bufferFor(op), g: g.bufferFor(op) },
    { n, offP: p.offset / w, offG: g.offset / w, offM: m.offset / w, offV: v.offset / w, ...adamwUniforms(h) },
    grid(Math.ceil(n / WG)),
  );
}

/** One tensor of a multi-tensor AdamW update: the parameter, its gradient, and where its moments sit in the flat state. */
export interface AdamWItem {
  p: Tensor;
  g: Tensor;
  /** Element offset of this parameter's moments in the flat `m` and `v` (a multiple of 4). */
  at: number;
}

/** Tensors one multi-tensor dispatch can take on this device: each binds its parameter and gradient, plus m and v. */
export const multiTensorLimit = (): number => Math.min(8, Math.floor((getEngine().device.limits.maxStorageBuffersPerShaderStage - 2) / 2));

/**
 * AdamW over several tensors in one dispatch (PyTorch's foreach/multi-tensor form): the formula of adamwUpdate,
 * element for element the same arithmetic, for up to multiTensorLimit() parameters whose moments lie in one flat
 * `m` and `v` (nn/optim.ts keeps them so). Thread i finds its tensor from the running ends of their sizes; the
 * parameter and gradient bindings are chosen by a switch, WGSL having no arrays of bindings. vec4 when every
 * tensor's size and offsets allow. Tensors sharing a parameter buffer must go to separate dispatches (two
 * writable bindings of one buffer are not allowed).
 */
export function adamwMultiUpdate(
  items: AdamWItem[],
  m: Tensor,
  v: Tensor,
  h: AdamWHyper,
): void {
  const op = 'adamw';
  const K = items.length;
  if (K === 0) return;
  if (K > multiTensorLimit()) throw new ShapeError(`${op}: ${K} tensors in one dispatch, this device takes ${multiTensorLimit()}`);
  for (const { p, g, at } of items) {
    check(op, p, g);
    if (at % 4 || at + p.size > m.size || m.size !== v.size || !m.isContiguous || !v.isContiguous) {
      throw new ShapeError(`${op}: moments at ${at} for ${p.size} elements do not fit the flat state of ${m.size}`);
    }
  }
  const w = items.every(({ p, g }) => p.size % 4 === 0 && p.offset % 4 === 0 && g.offset % 4 === 0) && m.offset % 4 === 0 && v.offset % 4 === 0 ? 4 : 1;
  const T = ty(w);
  const slots = [...Array(K).keys()];
  const kernel = getEngine().kernel(`optim:adamw-multi:${K}:${w}`, () => ({
    name: `adamw_multi${K}${w === 4 ? '_vec4' : ''}`,
    outputs: { m: T, v: T, ...Object.fromEntries(slots.map((j) => [`p${j}`, T])) },
    inputs: Object.fromEntries(slots.map((j) => [`g${j}`, T])),
    uniforms: { ends: 'vec8u', offP: 'vec8u', offG: 'vec8u', offS: 'vec8u', n: 'u32', ...ADAMW_UNIFORMS } as const,
    wgsl: `
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  // Which tensor: the first whose running end lies past i.
  var j = 0u;
  for (var k = 0u; k < ${K - 1}u; k++) { if (i >= at8(u.ends, k)) { j = k + 1u; } }
  let local = i - select(0u, at8(u.ends, max(j, 1u) - 1u), j > 0u);
  let ip = at8(u.offP, j) + local;
  var param: ${T};
  var grad: ${T};
  switch j {
${slots.map((j) => `    case ${j}u: { param = p${j}[ip]; grad = g${j}[at8(u.offG, j) + local]; }`).join('\n')}
    default: { return; }
  }
  let s = at8(u.offS, j) + local;
  let mi = u.beta1 * m[s] + (1.0 - u.beta1) * grad;
  let vi = u.beta2 * v[s] + (1.0 - u.beta2) * grad * grad;
  m[s] = mi;
  v[s] = vi;
  let updated = param * u.decay - u.stepSize * mi / (sqrt(vi) / u.bc2Sqrt + u.eps);
  switch j {
${slots.map((j) => `    case ${j}u: { p${j}[ip] = updated; }`).join('\n')}
    default: {}
  }
}`,
  }));
  let end = 0;
  const ends = items.map(({ p }) => (end += p.size / w));
  const buffers: Record<string, GPUBuffer> & { m: GPUBuffer; v: GPUBuffer } = { m: m.bufferFor(op), v: v.bufferFor(op) };
  items.forEach(({ p, g }, j) => {
    buffers[`p${j}`] = p.bufferFor(op);
    buffers[`g${j}`] = g.bufferFor(op);
  });
  getEngine().dispatch(
    kernel,
    buffers,
    {
      ends,
      offP: items.map(({ p }) => p.offset / w),
      offG: items.map(({ g }) => g.offset / w),
      offS: items.map(({ at }) => (m.offset + at) / w),
      n: end,
      ...adamwUniforms(h),
    },
    grid(Math.ceil(end / WG)),
  );
}

/**
 * SGD, PyTorch's form: d = g + wd·p; with momentum, buf ← μ·buf + (1 − dampening)·d (buf ← d on the first
 * step) and d = buf (or d + μ·buf with Nesterov); p ← p − lr·d. `buf` is ignored without momentum.
 */
export function sgdUpdate(
  p: Tensor,
  g: Tensor,
  buf: Tensor,
  h: { lr: Scalar; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; first: boolean },
): void {
  const op = 'sgd';
  check(op, p, g, buf);
  const w = width(p, g, buf);
  const kernel = getEngine().kernel(`optim:sgd:${w}`, () => ({
    name: `sgd${w === 4 ? '_vec4' : ''}`,
    outputs: { p: ty(w), buf: ty(w) },
    inputs: { g: ty(w) },
    uniforms: {
      n: 'u32',
      offP: 'u32',
      offG: 'u32',
      offB: 'u32',
      lr: 'f32',
      momentum: 'f32',
      dampening: 'f32',
      wd: 'f32',
      nesterov: 'u32',
      first: 'u32',
    } as const,
    wgsl: `
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  let pi = p[u.offP + i];
  var d = g[u.offG + i] + u.wd * pi;
  if (u.momentum != 0.0) {
    var b = d;
    if (u.first == 0u) { b = u.momentum * buf[u.offB + i] + (1.0 - u.dampening) * d; }
    buf[u.offB + i] = b;
    d = select(b, d + u.momentum * b, u.nesterov == 1u);
  }
  p[u.offP + i] = pi - u.lr * d;
}`,
  }));
  const n = p.size / w;
  getEngine().dispatch(
    kernel,
    { p: p.bufferFor(op), buf: buf.bufferFor(op), g: g.bufferFor(op) },
    {
      n,
      offP: p.offset / w,
      offG: g.offset / w,
      offB: buf.offset / w,
      lr: () => valueOf(h.lr),
      momentum: h.momentum,
      dampening: h.dampening,
      wd: h.weightDecay,
      nesterov: h.nesterov ? 1 : 0,
      first: h.first ? 1 : 0,
    },
    grid(Math.ceil(n / WG)),
  );
}

/** Gradients one unscale dispatch can take on this device: each binds its own buffer, plus the flag. */
export const unscaleLimit = (): number => Math.min(8, getEngine().device.limits.maxStorageBuffersPerShaderStage - 1);

/**
 * Mixed precision's unscale (nn/precision.ts GradScaler): g ← g · inverse in place for each of up to
 * unscaleLimit() gradients in one dispatch, and `flag` [1] (i32) set to 1 when any result is ±Inf or NaN — told by
 * its exponent bits (all ones), which no compiler's fast-math assumptions can fold away. Every thread that finds
 * one writes the same 1, so the race is benign (as the engine's error flag). One pass over the gradients instead
 * of a multiply, a finiteness sum and their combining per tensor. Thread i finds its gradient from the running
 * ends of their sizes, as adamwMultiUpdate does; vec4 when every size and offset allows. The gradients must not
 * share a buffer (two writable bindings of one buffer are not allowed).
 */
export function unscaleRaw(grads: Tensor[], inverse: Scalar, flag: Tensor): void {
  const op = 'unscale';
  for (const g of grads) check(op, g);
  if (flag.dtype !== 'i32' || flag.size !== 1) throw new ShapeError(`${op}: the flag must be one i32, got ${fmtShape(flag.shape)} ${flag.dtype}`);
  const K = grads.length;
  if (K === 0) return;
  if (K > unscaleLimit()) throw new ShapeError(`${op}: ${K} gradients in one dispatch, this device takes ${unscaleLimit()}`);
  if (new Set(grads.map((g) => g.bufferFor(op))).size < K) throw new ShapeError(`${op}: two of the gradients share a buffer`);
  const w = width(...grads);
  const T = ty(w);
  const slots = [...Array(K).keys()];
  const kernel = getEngine().kernel(`optim:unscale:${K}:${w}`, () => ({
    name: `unscale${K}${w === 4 ? '_vec4' : ''}`,
    outputs: { flag: 'i32' as const, ...Object.fromEntries(slots.map((j) => [`g${j}`, T])) },
    inputs: {},
    uniforms: { ends: 'vec8u', offG: 'vec8u', n: 'u32', offF: 'u32', inverse: 'f32' } as const,
    wgsl: `
${perItemEntry(WG, 'i')}
  if (i >= u.n) { return; }
  var j = 0u;
  for (var k = 0u; k < ${K - 1}u; k++) { if (i >= at8(u.ends, k)) { j = k + 1u; } }
  let at = at8(u.offG, j) + i - select(0u, at8(u.ends, max(j, 1u) - 1u), j > 0u);
  var v: ${T};
  switch j {
${slots.map((j) => `    case ${j}u: { v = g${j}[at] * u.inverse; g${j}[at] = v; }`).join('\n')}
    default: { return; }
  }
  let exponent = ${w === 4 ? 'bitcast<vec4<u32>>(v)' : 'bitcast<u32>(v)'} & ${w === 4 ? 'vec4<u32>(0x7f800000u)' : '0x7f800000u'};
  if (${w === 4 ? 'any(exponent == vec4<u32>(0x7f800000u))' : 'exponent == 0x7f800000u'}) { flag[u.offF] = 1; }
}`,
  }));
  let end = 0;
  const ends = grads.map((g) => (end += g.size / w));
  if (end === 0) return;
  const buffers: Record<string, GPUBuffer> & { flag: GPUBuffer } = { flag: flag.bufferFor(op) };
  grads.forEach((g, j) => (buffers[`g${j}`] = g.bufferFor(op)));
  getEngine().dispatch(
    kernel,
    buffers,
    { ends, offG: grads.map((g) => g.offset / w), n: end, offF: flag.offset, inverse },
    grid(Math.ceil(end / WG)),
  );
}
