// Batch normalisation over NCHW in training mode: per-channel statistics over (N, H, W), fused with the
// affine transform, and the matching backward. Eval mode is plain elementwise math on the running statistics
// (nn/layers.ts), so it needs no kernel of its own.
//
// Statistics: per-plane partial sums, then per-channel totals, for the mean and then for the squared
// deviations (two passes, for accuracy). The apply and backward-apply kernels are one thread per element.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { grid, perItemEntry, vectorPrelude, type Width } from './wgsl.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';

const WG = 64;

/**
 * A batch-norm kernel. Arrays marked 'V' hold image values and are read as vec4 when a plane's size allows
 * (`w` = 4; u.HW then counts vec4s), the others hold one f32 per channel.
 */
function channelKernel<O extends string, I extends string>(
  name: string,
  outputs: Record<O, 'f32' | 'V'>,
  inputs: Record<I, 'f32' | 'V'>,
  body: string,
  w: Width,
) {
  const types = <K extends string>(m: Record<K, 'f32' | 'V'>) =>
    Object.fromEntries(Object.entries(m).map(([k, t]) => [k, t === 'V' && w === 4 ? 'vec4<f32>' : 'f32'])) as Record<K, 'f32' | 'vec4<f32>'>;
  return getEngine().kernel(`bn:${name}:${w}`, () => ({
    name: `${name}${w === 4 ? '_vec4' : ''}`,
    outputs: types(outputs),
    inputs: types(inputs),
    uniforms: { N: 'u32', C: 'u32', HW: 'u32', total: 'u32', eps: 'f32' } as const,
    wgsl: `
${vectorPrelude(w)}
${perItemEntry(WG)}
  ${body}
}`,
  }));
}

/** Training-mode forward; returns y and the batch mean, biased variance and 1/sqrt(var + eps) per channel. */
export function batchNormRaw(x: Tensor, weight: Tensor, bias: Tensor, eps: number): { y: Tensor; mean: Tensor; variance: Tensor; rstd: Tensor } {
  const op = 'batchNorm2d';
  if (x.rank !== 4) throw new ShapeError(`${op}: input must be NCHW (rank 4), got ${fmtShape(x.shape)}`);
  if (x.dtype !== 'f32') throw new DTypeError(`${op}: expects f32 input, got ${x.dtype}`);
  const [N, C, H, W] = x.shape;
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p.rank !== 1 || p.shape[0] !== C) throw new ShapeError(`${op}: ${name} must be [${C}], got ${fmtShape(p.shape)}`);
  }
  if (N * H * W < 2) throw new ShapeError(`${op}: training mode needs more than one value per channel, got input ${fmtShape(x.shape)}`);
  const [xc, wc, bc] = [contiguousCopy(x), contiguousCopy(weight), contiguousCopy(bias)];
  const engine = getEngine();
  const w = (H * W) % 4 === 0 ? 4 : 1;
  const dims = { N, C, HW: (H * W) / w, eps };
  const mean = Tensor.empty([C]);
  const variance = Tensor.empty([C]);
  const rstd = Tensor.empty([C]);
  const planes = Tensor.empty([N * C]);
  const planeDims = { ...dims, total: N * C };
  const channelDims = { ...dims, total: C };
  // Two levels for parallelism: one thread per (n, c) plane sums it, then one thread per channel sums the
  // N plane results. Once for the mean, once for the squared deviations (two passes, for accuracy).
  const planeSum = channelKernel('batchNorm2d_plane_sum', { planes: 'f32' }, { x: 'V', mean: 'f32' }, `
  if (t >= u.total) { return; }
  let base = t * u.HW;
  var s = V(0.0);
  if (u.eps < 0.0) {
    for (var i = 0u; i < u.HW; i++) { s += x[base + i]; }
  } else {
    let mu = mean[t % u.C];
    for (var i = 0u; i < u.HW; i++) { let d = x[base + i] - mu; s += d * d; }
  }
  planes[t] = hsum(s);`, w);
  const channelSum = channelKernel('batchNorm2d_channel_stats', { mean: 'f32', variance: 'f32', rstd: 'f32' }, { planes: 'f32' }, `
  if (t >= u.total) { return; }
  var s = 0.0;
  for (var n = 0u; n < u.N; n++) { s += planes[n * u.C + t]; }
  let avg = s / f32(u.N * u.HW * ${w}u);
  if (u.eps < 0.0) { mean[t] = avg; } else { variance[t] = avg; rstd[t] = inverseSqrt(avg + u.eps); }`, w);
  // eps < 0 selects the mean pass (eps itself is never negative).
  const buffers = { planes: planes.bufferFor(op), x: xc.bufferFor(op), mean: mean.bufferFor(op), variance: variance.bufferFor(op), rstd: rstd.bufferFor(op) };
  for (const pass of [{ eps: -1 }, { eps }]) {
    engine.dispatch(planeSum, { planes: buffers.planes, x: buffers.x, mean: buffers.mean }, { ...planeDims, ...pass }, grid(Math.ceil((N * C) / WG)));
    const stats = { mean: buffers.mean, variance: buffers.variance, rstd: buffers.rstd, planes: buffers.planes };
    engine.dispatch(channelSum, stats, { ...channelDims, ...pass }, grid(Math.ceil(C / WG)));
  }
  planes.dispose();
  const y = Tensor.empty(x.shape);
  const apply = channelKernel('batchNorm2d_apply', { y: 'V' }, { x: 'V', mean: 'f32', rstd: 'f32', w: 'f32', b: 'f32' }, `
  if (t >= u.total) { return; }
  let c = (t / u.HW) % u.C;
  y[t] = (x[t] - mean[c]) * rstd[c] * w[c] + b[c];`, w);
  const applyBuffers = {
    y: y.bufferFor(op),
    x: xc.bufferFor(op),
    mean: mean.bufferFor(op),
    rstd: rstd.bufferFor(op),
    w: wc.bufferFor(op),
    b: bc.bufferFor(op),
  };
  engine.dispatch(apply, applyBuffers, { ...dims, total: x.size / w }, grid(Math.ceil(x.size / w / WG)));
  for (const t of [xc, wc, bc]) t.dispose();
  return { y, mean, variance, rstd };
}

/**
 * Training-mode backward, with x̂ = (x − mean)·rstd and M = N·H·W values per channel:
 *   dweight = Σ g·x̂,  dbias = Σ g,  dx = weight·rstd/M · (M·g − dbias − x̂·dweight).
 */
export function batchNormBackwardRaw(g: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
  const op = 'batchNorm2dBackward';
  const [N, C, H, W] = x.shape;
  const [gc, xc, wc] = [contiguousCopy(g), contiguousCopy(x), contiguousCopy(weight)];
  const engine = getEngine();
  const w = (H * W) % 4 === 0 ? 4 : 1;
  const dims = { N, C, HW: (H * W) / w, eps: 0 };
  const dw = Tensor.empty([C]);
  const db = Tensor.empty([C]);
  const sums = channelKernel('batchNorm2d_backward_sums', { dw: 'f32', db: 'f32' }, { g: 'V', x: 'V', mean: 'f32', rstd: 'f32' }, `
  if (t >= u.C) { return; }
  var sg = V(0.0);
  var sgx = V(0.0);
  for (var n = 0u; n < u.N; n++) {
    let base = (n * u.C + t) * u.HW;
    for (var i = 0u; i < u.HW; i++) { let gv = g[base + i]; sg += gv; sgx += gv * (x[base + i] - mean[t]); }
  }
  dw[t] = hsum(sgx) * rstd[t];
  db[t] = hsum(sg);`, w);
  const statistics = { g: gc.bufferFor(op), x: xc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op) };
  engine.dispatch(sums, { dw: dw.bufferFor(op), db: db.bufferFor(op), ...statistics }, { ...dims, total: C }, grid(Math.ceil(C / WG)));
  const dx = Tensor.empty(x.shape);
  const apply = channelKernel('batchNorm2d_backward_dx', { dx: 'V' }, { g: 'V', x: 'V', mean: 'f32', rstd: 'f32', w: 'f32', dw: 'f32', db: 'f32' }, `
  if (t >= u.total) { return; }
  let c = (t / u.HW) % u.C;
  let M = f32(u.N * u.HW * ${w}u);
  let xh = (x[t] - mean[c]) * rstd[c];
  dx[t] = w[c] * rstd[c] / M * (M * g[t] - db[c] - xh * dw[c]);`, w);
  const applyBuffers = { dx: dx.bufferFor(op), ...statistics, w: wc.bufferFor(op), dw: dw.bufferFor(op), db: db.bufferFor(op) };
  engine.dispatch(apply, applyBuffers, { ...dims, total: x.size / w }, grid(Math.ceil(x.size / w / WG)));
  for (const t of [gc, xc, wc]) t.dispose();
  return { dx, dw, db };
}
