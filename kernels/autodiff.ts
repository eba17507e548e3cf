// Reverse-mode autodiff: what every op saves for its backward (OpCtx), the typed table of backward rules
// (an op without a rule is a compile error), and the backward() driver.
//
// A rule receives the upstream gradient g, the op's saved context, and which inputs need a gradient; it
// returns one gradient per input (null where none flows). Rules run under noGrad with ordinary tensor ops,
// so every backward is itself made of tested kernels.
import { noGrad, record, type Node } from '../core/autograd.ts';
import { ShapeError, TensorError, fmtShape } from '../core/errors.ts';
import { sameShape, type Shape } from '../core/shape.ts';
import { Tensor, keep, tidy } from '../core/tensor.ts';
import { onesLike, zeros } from './creation.ts';
import { elementwise, type Operand } from './elementwise.ts';
import { crossEntropyBackwardRaw, layerNormBackwardRaw, softmaxBackwardRaw } from './rowwise.ts';
import { indexSelectBackwardRaw } from './gather.ts';
import { col2imRaw, poolBackwardRaw, type ConvGeometry, type PoolGeometry } from './conv.ts';
import { batchNormBackwardRaw } from './batchnorm.ts';
import { matmulRaw } from './matmul.ts';
import { attentionBackward, selfAttentionBackward, type AttentionCtx } from './attention.ts';
import { expand, narrow, permute, reshape, slice, transpose } from './movement.ts';
import { reduceRaw, sumTo } from './reduce.ts';

type X = { x: Tensor };
type Y = { y: Tensor };
type BinShapes = { aShape: Shape; bShape: Shape };

/** What each differentiable op saves for its backward. */
export interface OpCtx {
  neg: Record<string, never>;
  exp: Y;
  log: X;
  sqrt: Y;
  rsqrt: Y;
  abs: X;
  tanh: Y;
  sigmoid: Y;
  relu: X;
  gelu: X;
  quickgelu: X;
  add: BinShapes;
  sub: BinShapes;
  mul: { a: Operand; b: Operand };
  div: { a: Operand; b: Operand };
  pow: { a: Operand; b: Operand; y: Tensor };
  clamp: { x: Tensor; lo: number; hi: number };
  where: { cond: Tensor } & BinShapes;
  sum: { shape: Shape; axes: number[]; scale: number };
  max: { x: Tensor; axes: number[]; out: Tensor };
  min: { x: Tensor; axes: number[]; out: Tensor };
  reshape: { shape: Shape };
  permute: { dims: number[] };
  expand: { shape: Shape };
  slice: { shape: Shape; begin: number[] };
  copy: Record<string, never>;
  concat: { axis: number; sizes: number[] };
  pad: { begin: number[]; shape: Shape };
  matmul: { a: Tensor; b: Tensor };
  softmax: Y;
  logSoftmax: Y;
  layerNorm: { x: Tensor; weight: Tensor; mean: Tensor; rstd: Tensor };
  crossEntropy: { logits: Tensor; labels: Tensor };
  indexSelect: { shape: Shape; axis: number; index: Tensor };
  im2col: { geometry: ConvGeometry };
  pool2d: { geometry: PoolGeometry; argmax: Tensor };
  batchNorm2d: { x: Tensor; weight: Tensor; mean: Tensor; rstd: Tensor };
  attention: AttentionCtx;
  selfAttention: AttentionCtx;
}
export type OpName = keyof OpCtx;

type Grads = (Tensor | null)[];
type Rule<K extends OpName> = (g: Tensor, ctx: OpCtx[K], needs: readonly boolean[]) => Grads;

const ew = elementwise;
const shapeOf = (v: Operand): Shape => (v instanceof Tensor ? v.shape : []);
/** The gradient of a broadcast operand, or null when it is a plain number or needs none. */
const reduceTo = (need: boolean, g: Tensor, shape: Shape | null): Tensor | null => (need && shape ? sumTo(g, shape) : null);

/** g broadcast back over the axes a reduction removed. */
function unreduce(g: Tensor, shape: Shape, axes: readonly number[]): Tensor {
  const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return expand(reshape(g, kept), shape);
}

function extremumGrad(g: Tensor, { x, axes, out }: OpCtx['max']): Grads {
  // Ties share the gradient equally (PyTorch's amax/amin).
  const mask = ew('eq', [x, unreduce(out, x.shape, axes)]);
  const maskF = ew('toF32', [mask]);
  const count = reduceRaw('sum', maskF, axes, true);
  const share = ew('div', [unreduce(g, x.shape, axes), count]);
  return [ew('mul', [share, maskF])];
}

export const backwardRules: { [K in OpName]: Rule<K> } = {
  neg: (g) => [ew('neg', [g])],
  exp: (g, { y }) => [ew('mul', [g, y])],
  log: (g, { x }) => [ew('div', [g, x])],
  sqrt: (g, { y }) => [ew('div', [ew('mul', [g, 0.5]), y])],
  rsqrt: (g, { y }) => [ew('mul', [ew('mul', [g, -0.5]), ew('mul', [ew('mul', [y, y]), y])])],
  abs: (g, { x }) => [ew('absGrad', [x, g])],
  tanh: (g, { y }) => [ew('tanhGrad', [y, g])],
  sigmoid: (g, { y }) => [ew('sigmoidGrad', [y, g])],
  relu: (g, { x }) => [ew('reluGrad', [x, g])],
  gelu: (g, { x }) => [ew('geluGrad', [x, g])],
  quickgelu: (g, { x }) => [ew('quickgeluGrad', [x, g])],
  add: (g, { aShape, bShape }, [na, nb]) => [reduceTo(na, g, aShape), reduceTo(nb, g, bShape)],
  sub: (g, { aShape, bShape }, [na, nb]) => [reduceTo(na, g, aShape), reduceTo(nb, nb ? ew('neg', [g]) : g, bShape)],
  mul: (g, { a, b }, [na, nb]) => [reduceTo(na, na ? ew('mul', [g, b]) : g, shapeOf(a)), reduceTo(nb, nb ? ew('mul', [g, a]) : g, shapeOf(b))],
  div: (g, { a, b }, [na, nb]) => [
    reduceTo(na, na ? ew('div', [g, b]) : g, shapeOf(a)),
    reduceTo(nb, nb ? ew('neg', [ew('div', [ew('mul', [g, a]), ew('mul', [b, b])])]) : g, shapeOf(b)),
  ],
  pow: (g, { a, b, y }, [na, nb]) => [
    reduceTo(na, na ? ew('mul', [ew('mul', [g, b]), ew('pow', [a, typeof b === 'number' ? b - 1 : ew('sub', [b, 1])])]) : g, shapeOf(a)),
    reduceTo(nb, nb ? ew('mul', [ew('mul', [g, y]), typeof a === 'number' ? Math.log(a) : ew('log', [a])]) : g, shapeOf(b)),
  ],
  clamp: (g, { x, lo, hi }) => [ew('clampGrad', [x, g, lo, hi])],
  where: (g, { cond, aShape, bShape }, [, na, nb]) => [null, reduceTo(na, na ? ew('where', [cond, g, 0]) : g, aShape), reduceTo(nb, nb ? ew('where', [cond, 0, g]) : g, bShape)],
  sum: (g, { shape, axes, scale }) => {
    const spread = unreduce(g, shape, axes);
    return [scale === 1 ? spread : ew('mul', [spread, scale])];
  },
  max: extremumGrad,
  min: extremumGrad,
  reshape: (g, { shape }) => [reshape(g, shape)],
  permute: (g, { dims }) => [permute(g, dims.map((_, i) => dims.indexOf(i)))],
  expand: (g, { shape }) => [sumTo(g, shape)],
  slice: (g, { shape, begin }) => {
    const dx = zeros(shape);
    const window = dx.view(g.shape, dx.strides, begin.reduce((acc, b, i) => acc + b * dx.strides[i], 0));
    ew('identity', [g], window);
    return [dx];
  },
  copy: (g) => [g],
  concat: (g, { axis, sizes }) => {
    let at = 0;
    return sizes.map((n) => narrow(g, axis, (at += n) - n, n));
  },
  pad: (g, { begin, shape }) => [slice(g, begin, shape.map((d, i) => begin[i] + d))],
  matmul: (g, { a, b }, [na, nb, nbias]) => [
    na ? sumTo(matmulRaw(g, transpose(b)), a.shape) : null,
    // A 2-D weight shared across a batch: one [K, rows]·[rows, N] product over all rows at once.
    nb ? (b.rank === 2 && a.rank > 2 ? matmulRaw(transpose(reshape(a, [-1, a.shape[a.rank - 1]])), reshape(g, [-1, g.shape[g.rank - 1]])) : sumTo(matmulRaw(transpose(a), g), b.shape)) : null,
    nbias ? reduceRaw('sum', g, [...Array(g.rank - 1).keys()], false) : null,
  ],
  softmax: (g, { y }) => [softmaxBackwardRaw(y, g, false)],
  logSoftmax: (g, { y }) => [softmaxBackwardRaw(y, g, true)],
  layerNorm: (g, { x, weight, mean, rstd }) => {
    const { dx, dw, db } = layerNormBackwardRaw(g, x, weight, mean, rstd);
    return [dx, dw, db];
  },
  crossEntropy: (g, { logits, labels }) => [crossEntropyBackwardRaw(g, logits, labels), null],
  indexSelect: (g, { shape, axis, index }) => [indexSelectBackwardRaw(g, shape, axis, index), null],
  im2col: (g, { geometry }) => [col2imRaw(g, geometry)],
  pool2d: (g, { geometry, argmax }) => [poolBackwardRaw(g, argmax, geometry)],
  batchNorm2d: (g, { x, weight, mean, rstd }) => {
    const { dx, dw, db } = batchNormBackwardRaw(g, x, weight, mean, rstd);
    return [dx, dw, db];
  },
  attention: (g, ctx, needs) => attentionBackward(g, ctx, needs),
  selfAttention: (g, ctx) => [selfAttentionBackward(g, ctx)],
};

/** Records `op` on `out` for autodiff (a no-op under noGrad or when no input requires grad). */
export function recordOp<K extends OpName>(op: K, inputs: readonly (Tensor | null)[], out: Tensor, ctx: OpCtx[K]): void {
  record(op, inputs, out, ctx as unknown as Record<string, unknown>);
}

/** Marks a tensor as a trainable leaf: it requires grad and lives outside tidy scopes until disposed. */
export function param(t: Tensor): Tensor {
  if (t.dtype !== 'f32') throw new TensorError(`param: only f32 tensors can require grad, got ${t.dtype}`);
  t.requiresGrad = true;
  return keep(t);
}

/** A view of t that autodiff treats as a constant. */
export function detach(t: Tensor): Tensor {
  return t.view(t.shape, t.strides);
}

/** Nodes reachable from root, parents before children. */
function topoOrder(root: Node): Node[] {
  const order: Node[] = [];
  const seen = new Set<Node>([root]);
  const stack: [Node, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, i] = top;
    if (i < node.parents.length) {
      top[1]++;
      const p = node.parents[i];
      if (p && !seen.has(p)) {
        seen.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(node);
    }
  }
  return order;
}

export interface BackwardOptions {
  /** Keep saved tensors so backward can run through the same graph again. */
  retainGraph?: boolean;
}

/**
 * Accumulates d(root)/d(leaf) into leaf.grad for every leaf that requires grad. A non-scalar root needs an
 * explicit seed gradient of its shape.
 */
export function backward(root: Tensor, seed?: Tensor, { retainGraph = false }: BackwardOptions = {}): void {
  root.bufferFor('backward');
  if (!root.requiresGrad) throw new TensorError(`backward: ${root} does not require grad (no input of its graph is a param)`);
  if (!seed && root.size !== 1) throw new ShapeError(`backward: root has shape ${fmtShape(root.shape)}; pass a seed gradient of that shape for a non-scalar root`);
  if (seed && !sameShape(seed.shape, root.shape)) throw new ShapeError(`backward: seed has shape ${fmtShape(seed.shape)}, root has ${fmtShape(root.shape)}`);
  noGrad(() => {
    const first = seed ? seed.view(seed.shape, seed.strides) : onesLike(root);
    if (!root.node) {
      accumulateLeaf(root, first);
      return;
    }
    const grads = new Map<Node, Tensor>([[root.node, first]]);
    const order = topoOrder(root.node);
    for (let k = order.length - 1; k >= 0; k--) {
      const node = order[k];
      const g = grads.get(node);
      if (!g) continue;
      grads.delete(node);
      if (node.isReleased) throw new TensorError(`backward: the graph through '${node.op}' was already freed by an earlier backward (pass retainGraph: true to run it twice)`);
      const needs = node.inputs.map((t) => !!t?.requiresGrad);
      const rule = backwardRules[node.op as OpName] as Rule<OpName>;
      const inputGrads = tidy(() => rule(g, node.ctx as unknown as OpCtx[OpName], needs));
      node.inputs.forEach((input, i) => {
        const gi = inputGrads[i];
        if (!input || !needs[i] || !gi) return;
        if (!sameShape(gi.shape, input.shape)) throw new TensorError(`backward: rule '${node.op}' returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(input.shape)}`);
        const parent = node.parents[i];
        if (!parent) accumulateLeaf(input, gi);
        else {
          const prev = grads.get(parent);
          grads.set(parent, prev ? ew('add', [prev, gi]) : gi.view(gi.shape, gi.strides));
          prev?.dispose();
        }
      });
      for (const t of new Set([g, ...inputGrads])) t?.dispose();
      if (!retainGraph) node.releaseSaved();
    }
    for (const g of grads.values()) g.dispose();
  });
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!leaf.requiresGrad || leaf.isDisposed) return;
  const prev = leaf.grad;
  leaf.grad = keep(prev ? ew('add', [prev, g]) : g.isContiguous ? g.view(g.shape, g.strides) : ew('identity', [g]));
  prev?.dispose();
}
