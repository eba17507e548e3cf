// Batch normalisation over NCHW in training mode: per-channel statistics over (N, H, W), fused with the
// affine transform, and the matching backward. Eval mode is plain elementwise math on the running statistics
// (nn/layers.ts), so it needs no kernel of its own.
//
// Statistics: one thread per channel walks its N·H·W values twice (mean, then the sum of squared deviations:
// two passes for accuracy). The apply and backward-apply kernels are one thread per element.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine, grid } from '../core/engine.ts';
import { Tensor } from '../core/tensor.ts';
import { recordOp } from './autodiff.ts';
import { contiguous } from './movement.ts';

const WG = 64;

function channelKernel(name: string, outputs: Record<string, 'f32'>, inputs: Record<string, 'f32'>, body: string) {
  return getEngine().kernel(`bn:${name}`, () => ({
    name,
    outputs,
    inputs,
    uniforms: { N: 'u32', C: 'u32', HW: 'u32', total: 'u32', eps: 'f32' } as const,
    wgsl: `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * ${WG}u;
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
  const [xc, wc, bc] = [contiguous(x), contiguous(weight), contiguous(bias)];
  const engine = getEngine();
  const dims = { N, C, HW: H * W, eps };
  const mean = Tensor.empty([C]);
  const variance = Tensor.empty([C]);
  const rstd = Tensor.empty([C]);
  const stats = channelKernel('batchNorm2d_stats', { mean: 'f32', variance: 'f32', rstd: 'f32' }, { x: 'f32' }, `
  if (t >= u.C) { return; }
  let count = f32(u.N * u.HW);
  var s = 0.0;
  for (var n = 0u; n < u.N; n++) { let base = (n * u.C + t) * u.HW; for (var i = 0u; i < u.HW; i++) { s += x[base + i]; } }
  let mu = s / count;
  var v = 0.0;
  for (var n = 0u; n < u.N; n++) { let base = (n * u.C + t) * u.HW; for (var i = 0u; i < u.HW; i++) { let d = x[base + i] - mu; v += d * d; } }
  mean[t] = mu;
  variance[t] = v / count;
  rstd[t] = inverseSqrt(v / count + u.eps);`);
  engine.dispatch(stats, { mean: mean.bufferFor(op), variance: variance.bufferFor(op), rstd: rstd.bufferFor(op), x: xc.bufferFor(op) } as never, { ...dims, total: C } as never, grid(Math.ceil(C / WG)));
  const y = Tensor.empty(x.shape);
  const apply = channelKernel('batchNorm2d_apply', { y: 'f32' }, { x: 'f32', mean: 'f32', rstd: 'f32', w: 'f32', b: 'f32' }, `
  if (t >= u.total) { return; }
  let c = (t / u.HW) % u.C;
  y[t] = (x[t] - mean[c]) * rstd[c] * w[c] + b[c];`);
  engine.dispatch(apply, { y: y.bufferFor(op), x: xc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op), w: wc.bufferFor(op), b: bc.bufferFor(op) } as never, { ...dims, total: x.size } as never, grid(Math.ceil(x.size / WG)));
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
  const [gc, xc, wc] = [contiguous(g), contiguous(x), contiguous(weight)];
  const engine = getEngine();
  const dims = { N, C, HW: H * W, eps: 0 };
  const dw = Tensor.empty([C]);
  const db = Tensor.empty([C]);
  const sums = channelKernel('batchNorm2d_backward_sums', { dw: 'f32', db: 'f32' }, { g: 'f32', x: 'f32', mean: 'f32', rstd: 'f32' }, `
  if (t >= u.C) { return; }
  var sg = 0.0;
  var sgx = 0.0;
  for (var n = 0u; n < u.N; n++) {
    let base = (n * u.C + t) * u.HW;
    for (var i = 0u; i < u.HW; i++) { let gv = g[base + i]; sg += gv; sgx += gv * (x[base + i] - mean[t]); }
  }
  dw[t] = sgx * rstd[t];
  db[t] = sg;`);
  engine.dispatch(sums, { dw: dw.bufferFor(op), db: db.bufferFor(op), g: gc.bufferFor(op), x: xc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op) } as never, { ...dims, total: C } as never, grid(Math.ceil(C / WG)));
  const dx = Tensor.empty(x.shape);
  const apply = channelKernel('batchNorm2d_backward_dx', { dx: 'f32' }, { g: 'f32', x: 'f32', mean: 'f32', rstd: 'f32', w: 'f32', dw: 'f32', db: 'f32' }, `
  if (t >= u.total) { return; }
  let c = (t / u.HW) % u.C;
  let M = f32(u.N * u.HW);
  let xh = (x[t] - mean[c]) * rstd[c];
  dx[t] = w[c] * rstd[c] / M * (M * g[t] - db[c] - xh * dw[c]);`);
  engine.dispatch(apply, { dx: dx.bufferFor(op), g: gc.bufferFor(op), x: xc.bufferFor(op), mean: mean.bufferFor(op), rstd: rstd.bufferFor(op), w: wc.bufferFor(op), dw: dw.bufferFor(op), db: db.bufferFor(op) } as never, { ...dims, total: x.size } as never, grid(Math.ceil(x.size / WG)));
  for (const t of [gc, xc, wc]) t.dispose();
  return { dx, dw, db };
}

/**
 * Training-mode batch norm of x [N, C, H, W]; returns y and the batch statistics (mean, biased variance) that
 * a BatchNorm2d layer folds into its running averages.
 */
export function batchNorm2dTrain(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): { y: Tensor; mean: Tensor; variance: Tensor } {
  const { y, mean, variance, rstd } = batchNormRaw(x, weight, bias, eps);
  recordOp('batchNorm2d', [x, weight, bias], y, { x, weight, mean, rstd });
  rstd.dispose();
  return { y, mean, variance };
}
