// Convolution and pooling over NCHW images.
//
// conv2d is im2col + the core matmul, so it inherits the matmul's speed: im2col lays the receptive fields out
// as cols [N, C·kh·kw, Ho·Wo], and W [O, C·kh·kw] · cols[n] is already the NCHW output [N, O, Ho·Wo]. A 1×1
// convolution with stride 1 skips im2col (the image itself is the cols matrix). Backward: the matmul rules give
// dW and dcols; col2im folds dcols back into the image, one thread per input pixel summing the kernel positions
// that read it (deterministic, no atomics).
// Pooling (average, max, adaptive average) runs one thread per output; its backward one thread per input pixel
// over the windows that contain it.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { F32_MAX, grid, perItemEntry } from './wgsl.ts';
import type { DType } from '../core/dtype.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';

const WG = 64;

export interface ConvGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  kh: number;
  kw: number;
  stride: number;
  padding: number;
  Ho: number;
  Wo: number;
}

export function geometry(op: string, x: Tensor, kh: number, kw: number, stride: number, padding: number): ConvGeometry {
  if (x.rank !== 4) throw new ShapeError(`${op}: input must be NCHW (rank 4), got ${fmtShape(x.shape)}`);
  if (x.dtype === 'i32') throw new DTypeError(`${op}: expects f32 or f16 input, got i32`);
  if (!(stride >= 1 && padding >= 0 && Number.isInteger(stride) && Number.isInteger(padding))) {
    throw new ShapeError(`${op}: stride must be ≥ 1 and padding ≥ 0 (integers), got ${stride} and ${padding}`);
  }
  const [N, C, H, W] = x.shape;
  const Ho = Math.floor((H + 2 * padding - kh) / stride) + 1;
  const Wo = Math.floor((W + 2 * padding - kw) / stride) + 1;
  if (Ho < 1 || Wo < 1) throw new ShapeError(`${op}: a ${kh}×${kw} window with padding ${padding} does not fit input ${fmtShape(x.shape)}`);
  return { N, C, H, W, kh, kw, stride, padding, Ho, Wo };
}

const GEOMETRY_UNIFORMS = { N: 'u32', C: 'u32', H: 'u32', W: 'u32', kh: 'u32', kw: 'u32', stride: 'u32', padding: 'u32', Ho: 'u32', Wo: 'u32' } as const;
/**
 * The spec fields of a kernel that writes `write` in `dtype` from `source`. Its reads convert to f32 where they
 * read (`f32(x[i])`: sums in f32 whatever the storage) and its stores to the output's type (`cols_t(v)`: one
 * rounding for f16), so one source serves both dtypes.
 */
function storage<Out extends string>(dtype: DType, write: Out, wgsl: string) {
  return { outputs: { [write]: dtype } as Record<Out, DType>, wgsl };
}

const geometryValues = (g: ConvGeometry) => ({ N: g.N, C: g.C, H: g.H, W: g.W, kh: g.kh, kw: g.kw, stride: g.stride, padding: g.padding, Ho: g.Ho, Wo: g.Wo });

/**
 * cols[n, (c, i, j), (oh, ow)] = x[n, c, oh·s − p + i, ow·s − p + j] (0 outside the image). One thread per
 * (n, c, output pixel) writes all kh·kw of its values: the index decoding (integer divisions, costly on a CPU
 * adapter) happens once per kh·kw outputs, and neighbouring threads still read and write neighbouring addresses.
 */
export function im2colRaw(x: Tensor, g: ConvGeometry): Tensor {
  const op = 'im2col';
  const src = contiguousCopy(x);
  const out = Tensor.empty([g.N, g.C * g.kh * g.kw, g.Ho * g.Wo], x.dtype);
  const total = g.N * g.C * g.Ho * g.Wo;
  const kernel = getEngine().kernel(`conv:im2col:${x.dtype}`, () => ({
    name: `${op}(${x.dtype})`,
    inputs: { x: x.dtype },
    uniforms: { ...GEOMETRY_UNIFORMS, total: 'u32', off: 'u32' },
    ...storage(x.dtype, 'cols', `
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let P = u.Ho * u.Wo;
  let p = t % P;
  let nc = t / P; // n·C + c
  let h0 = i32((p / u.Wo) * u.stride) - i32(u.padding);
  let w0 = i32((p % u.Wo) * u.stride) - i32(u.padding);
  let plane = u.off + nc * u.H * u.W;
  var row = nc * u.kh * u.kw; // (n·C + c)·kh·kw = n·K + c·kh·kw
  for (var i = 0u; i < u.kh; i++) {
    let ih = h0 + i32(i);
    let rowOk = ih >= 0 && u32(ih) < u.H;
    for (var j = 0u; j < u.kw; j++) {
      let iw = w0 + i32(j);
      var v = 0.0;
      if (rowOk && iw >= 0 && u32(iw) < u.W) { v = f32(x[plane + u32(ih) * u.W + u32(iw)]); }
      cols[row * P + p] = cols_t(v);
      row++;
    }
  }
}`),
  }));
  if (total > 0) {
    getEngine().dispatch(
      kernel,
      { cols: out.bufferFor(op), x: src.bufferFor(op) },
      { ...geometryValues(g), total, off: src.offset },
      grid(Math.ceil(total / WG)),
    );
  }
  src.dispose();
  return out;
}

/** The adjoint of im2col: dx[n, c, h, w] = Σ over kernel positions (i, j) reading (h, w) of dcols. */
export function col2imRaw(dcols: Tensor, g: ConvGeometry): Tensor {
  const op = 'col2im';
  const src = contiguousCopy(dcols);
  const out = Tensor.empty([g.N, g.C, g.H, g.W], dcols.dtype);
  const total = out.size;
  const kernel = getEngine().kernel(`conv:col2im:${dcols.dtype}`, () => ({
    name: `${op}(${dcols.dtype})`,
    inputs: { cols: dcols.dtype },
    uniforms: { ...GEOMETRY_UNIFORMS, total: 'u32', off: 'u32' },
    ...storage(dcols.dtype, 'dx', `
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let w = t % u.W;
  let h = (t / u.W) % u.H;
  let c = (t / (u.W * u.H)) % u.C;
  let n = t / (u.W * u.H * u.C);
  let P = u.Ho * u.Wo;
  let K = u.C * u.kh * u.kw;
  var acc = 0.0;
  for (var i = 0u; i < u.kh; i++) {
    let y = i32(h + u.padding) - i32(i);
    if (y < 0 || u32(y) % u.stride != 0u || u32(y) / u.stride >= u.Ho) { continue; }
    for (var j = 0u; j < u.kw; j++) {
      let xx = i32(w + u.padding) - i32(j);
      if (xx < 0 || u32(xx) % u.stride != 0u || u32(xx) / u.stride >= u.Wo) { continue; }
      let r = (c * u.kh + i) * u.kw + j;
      acc += f32(cols[u.off + (n * K + r) * P + (u32(y) / u.stride) * u.Wo + u32(xx) / u.stride]);
    }
  }
  dx[t] = dx_t(acc);
}`),
  }));
  if (total > 0) {
    getEngine().dispatch(
      kernel,
      { dx: out.bufferFor(op), cols: src.bufferFor(op) },
      { ...geometryValues(g), total, off: src.offset },
      grid(Math.ceil(total / WG)),
    );
  }
  src.dispose();
  return out;
}

// ---- pooling ------------------------------------------------------------------------------------------------

export type PoolKind = 'avg' | 'max' | 'adaptive';

export interface PoolGeometry extends ConvGeometry {
  kind: PoolKind;
  countIncludePad: boolean;
}

/** WGSL computing the window [h0, h1) × [w0, w1) of output (oh, ow) and the average's divisor. */
const WINDOW = `
fn window(oh: u32, ow: u32) -> vec4<i32> {
  if (u.adaptive == 1u) {
    return vec4<i32>(i32((oh * u.H) / u.Ho), i32(((oh + 1u) * u.H + u.Ho - 1u) / u.Ho), i32((ow * u.W) / u.Wo), i32(((ow + 1u) * u.W + u.Wo - 1u) / u.Wo));
  }
  let h0 = i32(oh * u.stride) - i32(u.padding);
  let w0 = i32(ow * u.stride) - i32(u.padding);
  return vec4<i32>(h0, h0 + i32(u.kh), w0, w0 + i32(u.kw));
}
// PyTorch's divisor: the window clipped to the padded image when padding counts, else to the image.
fn divisor(win: vec4<i32>) -> f32 {
  if (u.countPad == 1u && u.adaptive == 0u) {
    let hp = min(win.y, i32(u.H + u.padding)) - win.x;
    let wp = min(win.w, i32(u.W + u.padding)) - win.z;
    return f32(hp * wp);
  }
  return f32((min(win.y, i32(u.H)) - max(win.x, 0)) * (min(win.w, i32(u.W)) - max(win.z, 0)));
}`;
const POOL_UNIFORMS = { ...GEOMETRY_UNIFORMS, total: 'u32', off: 'u32', adaptive: 'u32', countPad: 'u32', isMax: 'u32' } as const;
const poolValues = (g: PoolGeometry, total: number, off: number) => ({
  ...geometryValues(g),
  total,
  off,
  adaptive: g.kind === 'adaptive' ? 1 : 0,
  countPad: g.countIncludePad ? 1 : 0,
  isMax: g.kind === 'max' ? 1 : 0,
});

/** Forward pooling; for max pooling also the flat (h·W + w) index of each maximum. */
export function poolRaw(x: Tensor, g: PoolGeometry): { y: Tensor; argmax: Tensor } {
  const op = `${g.kind}Pool2d`;
  const src = contiguousCopy(x);
  const y = Tensor.empty([g.N, g.C, g.Ho, g.Wo], x.dtype);
  const argmax = Tensor.empty(g.kind === 'max' ? y.shape : [1], 'i32');
  const total = y.size;
  const spec = storage(x.dtype, 'y', `${WINDOW}
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let ow = t % u.Wo;
  let oh = (t / u.Wo) % u.Ho;
  let plane = u.off + (t / (u.Wo * u.Ho)) * u.H * u.W;
  let win = window(oh, ow);
  var acc = select(0.0, -${F32_MAX}, u.isMax == 1u);
  var best = -1;
  for (var h = max(win.x, 0); h < min(win.y, i32(u.H)); h++) {
    for (var w = max(win.z, 0); w < min(win.w, i32(u.W)); w++) {
      let v = f32(x[plane + u32(h) * u.W + u32(w)]);
      if (u.isMax == 1u) {
        if (v > acc || best < 0) { acc = v; best = h * i32(u.W) + w; }
      } else {
        acc += v;
      }
    }
  }
  if (u.isMax == 1u) { y[t] = y_t(acc); argmax[t] = best; } else { y[t] = y_t(acc / divisor(win)); }
}`);
  const kernel = getEngine().kernel(`pool:forward:${x.dtype}`, () => ({
    name: `pool2d(${x.dtype})`,
    inputs: { x: x.dtype },
    uniforms: POOL_UNIFORMS,
    ...spec,
    outputs: { ...spec.outputs, argmax: 'i32' as const },
  }));
  if (total > 0) {
    getEngine().dispatch(
      kernel,
      { y: y.bufferFor(op), argmax: argmax.bufferFor(op), x: src.bufferFor(op) },
      poolValues(g, total, src.offset),
      grid(Math.ceil(total / WG)),
    );
  }
  src.dispose();
  return { y, argmax };
}

/** Backward pooling: one thread per input pixel sums the gradient of every window that used it. */
export function poolBackwardRaw(gy: Tensor, argmax: Tensor, g: PoolGeometry): Tensor {
  const op = `${g.kind}Pool2dBackward`;
  const src = contiguousCopy(gy);
  const dx = Tensor.empty([g.N, g.C, g.H, g.W], gy.dtype);
  const total = dx.size;
  const kernel = getEngine().kernel(`pool:backward:${gy.dtype}`, () => ({
    name: `pool2d_backward(${gy.dtype})`,
    inputs: { gy: gy.dtype, argmax: 'i32' as const },
    uniforms: POOL_UNIFORMS,
    ...storage(gy.dtype, 'dx', `${WINDOW}
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let w = t % u.W;
  let h = (t / u.W) % u.H;
  let plane = t / (u.W * u.H);
  // Candidate outputs: a superset of the windows containing (h, w), checked exactly below.
  var oh0 = 0u; var oh1 = u.Ho; var ow0 = 0u; var ow1 = u.Wo;
  if (u.adaptive == 0u) {
    oh0 = u32(max(i32(h + u.padding) - i32(u.kh) + 1, 0)) / u.stride;
    oh1 = min(u.Ho, (h + u.padding) / u.stride + 1u);
    ow0 = u32(max(i32(w + u.padding) - i32(u.kw) + 1, 0)) / u.stride;
    ow1 = min(u.Wo, (w + u.padding) / u.stride + 1u);
  } else {
    oh0 = (h * u.Ho) / u.H; oh1 = min(u.Ho, ((h + 1u) * u.Ho + u.H - 1u) / u.H);
    ow0 = (w * u.Wo) / u.W; ow1 = min(u.Wo, ((w + 1u) * u.Wo + u.W - 1u) / u.W);
  }
  var acc = 0.0;
  for (var oh = oh0; oh < oh1; oh++) {
    for (var ow = ow0; ow < ow1; ow++) {
      let win = window(oh, ow);
      if (i32(h) < win.x || i32(h) >= win.y || i32(w) < win.z || i32(w) >= win.w) { continue; }
      let o = (plane * u.Ho + oh) * u.Wo + ow;
      if (u.isMax == 1u) {
        if (argmax[o] == i32(h * u.W + w)) { acc += f32(gy[u.off + o]); }
      } else {
        acc += f32(gy[u.off + o]) / divisor(win);
      }
    }
  }
  dx[t] = dx_t(acc);
}`),
  }));
  if (total > 0) {
    getEngine().dispatch(
      kernel,
      { dx: dx.bufferFor(op), gy: src.bufferFor(op), argmax: argmax.bufferFor(op) },
      poolValues(g, total, src.offset),
      grid(Math.ceil(total / WG)),
    );
  }
  src.dispose();
  return dx;
}
