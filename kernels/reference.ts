// Float64 reference implementations of every op, on plain host arrays. Tests compare kernels against these
// and finite-difference gradients are taken through them; benchmarks validate kernel output with them.
// Written for clarity, not speed.
import { broadcastShapes, contiguousStrides, sizeOf, type Shape } from '../core/shape.ts';

/** A dense row-major float64 array. */
export class Nd {
  constructor(
    readonly shape: number[],
    readonly data: Float64Array = new Float64Array(sizeOf(shape)),
  ) {
    if (data.length !== sizeOf(shape)) throw new Error(`Nd: ${data.length} values for shape [${shape}]`);
  }
  static from(data: ArrayLike<number>, shape: Shape): Nd {
    return new Nd([...shape], Float64Array.from(data));
  }
  get size(): number {
    return this.data.length;
  }
}

/** Calls f for every multi-index of shape, with its row-major position. */
function forEachIndex(shape: Shape, f: (idx: number[], flat: number) => void): void {
  const idx = new Array<number>(shape.length).fill(0);
  const n = sizeOf(shape);
  for (let flat = 0; flat < n; flat++) {
    f(idx, flat);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

/** Reads x at an index of a (broadcast) shape of rank ≥ x's rank. */
function at(x: Nd, idx: readonly number[]): number {
  const lead = idx.length - x.shape.length;
  const strides = contiguousStrides(x.shape);
  let o = 0;
  for (let d = 0; d < x.shape.length; d++) o += (x.shape[d] === 1 ? 0 : idx[d + lead]) * strides[d];
  return x.data[o];
}

export function map(x: Nd, f: (v: number) => number): Nd {
  return new Nd([...x.shape], x.data.map(f));
}

export function zip(xs: readonly Nd[], f: (...v: number[]) => number): Nd {
  const shape = broadcastShapes('reference', ...xs.map((x) => x.shape));
  const out = new Nd(shape);
  forEachIndex(shape, (idx, flat) => (out.data[flat] = f(...xs.map((x) => at(x, idx)))));
  return out;
}

export function reduce(x: Nd, axes: readonly number[], keepDims: boolean, init: number, f: (acc: number, v: number) => number, scale = 1): Nd {
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = new Nd(kept, new Float64Array(sizeOf(kept)).fill(init));
  const strides = contiguousStrides(kept);
  forEachIndex(x.shape, (idx, flat) => {
    let o = 0;
    idx.forEach((c, d) => (o += (axes.includes(d) ? 0 : c) * strides[d]));
    out.data[o] = f(out.data[o], x.data[flat]);
  });
  if (scale !== 1) out.data.forEach((v, i) => (out.data[i] = v * scale));
  return keepDims ? out : new Nd(x.shape.filter((_, i) => !axes.includes(i)), out.data);
}

export function argReduce(x: Nd, axis: number, better: (a: number, b: number) => boolean): Nd {
  const outShape = x.shape.filter((_, i) => i !== axis);
  const out = new Nd(outShape);
  const best = new Float64Array(out.size).fill(NaN);
  const strides = contiguousStrides(outShape);
  forEachIndex(x.shape, (idx, flat) => {
    let o = 0;
    idx.filter((_, d) => d !== axis).forEach((c, d) => (o += c * strides[d]));
    const v = x.data[flat];
    if (Number.isNaN(best[o]) || better(v, best[o])) {
      best[o] = v;
      out.data[o] = idx[axis];
    }
  });
  return out;
}

export function permute(x: Nd, dims: readonly number[]): Nd {
  const shape = dims.map((d) => x.shape[d]);
  const out = new Nd(shape);
  const src = contiguousStrides(x.shape);
  forEachIndex(shape, (idx, flat) => {
    let o = 0;
    idx.forEach((c, i) => (o += c * src[dims[i]]));
    out.data[flat] = x.data[o];
  });
  return out;
}

export const reshape = (x: Nd, shape: Shape): Nd => new Nd([...shape], x.data);
export const expand = (x: Nd, shape: Shape): Nd => zip([x, new Nd([...shape])], (a) => a);

export function slice(x: Nd, begin: readonly number[], end: readonly number[]): Nd {
  const shape = x.shape.map((_, i) => end[i] - begin[i]);
  const out = new Nd(shape);
  const strides = contiguousStrides(x.shape);
  forEachIndex(shape, (idx, flat) => (out.data[flat] = x.data[idx.reduce((o, c, i) => o + (c + begin[i]) * strides[i], 0)]));
  return out;
}

export function concat(xs: readonly Nd[], axis: number): Nd {
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((s, x) => s + x.shape[axis], 0);
  const out = new Nd(shape);
  const strides = contiguousStrides(shape);
  let base = 0;
  for (const x of xs) {
    forEachIndex(x.shape, (idx, flat) => {
      out.data[idx.reduce((o, c, i) => o + (i === axis ? c + base : c) * strides[i], 0)] = x.data[flat];
    });
    base += x.shape[axis];
  }
  return out;
}

export function pad(x: Nd, pads: readonly (readonly [number, number])[], value: number): Nd {
  const shape = x.shape.map((d, i) => d + (pads[i]?.[0] ?? 0) + (pads[i]?.[1] ?? 0));
  const out = new Nd(shape, new Float64Array(sizeOf(shape)).fill(value));
  const strides = contiguousStrides(shape);
  forEachIndex(x.shape, (idx, flat) => (out.data[idx.reduce((o, c, i) => o + (c + (pads[i]?.[0] ?? 0)) * strides[i], 0)] = x.data[flat]));
  return out;
}

/** Batched matmul with broadcast batch dimensions. */
export function matmul(a: Nd, b: Nd): Nd {
  const [M, K] = a.shape.slice(-2);
  const N = b.shape[b.shape.length - 1];
  const batch = broadcastShapes('reference', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const out = new Nd([...batch, M, N]);
  const aB = new Nd([...a.shape.slice(0, -2)]);
  const bB = new Nd([...b.shape.slice(0, -2)]);
  const aS = contiguousStrides(aB.shape);
  const bS = contiguousStrides(bB.shape);
  const offset = (idx: number[], shape: number[], strides: number[]) => {
    const lead = idx.length - shape.length;
    return shape.reduce((o, d, i) => o + (d === 1 ? 0 : idx[i + lead]) * strides[i], 0);
  };
  forEachIndex(batch, (idx, flat) => {
    const ao = offset(idx, aB.shape, aS) * M * K;
    const bo = offset(idx, bB.shape, bS) * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a.data[ao + i * K + k] * b.data[bo + k * N + j];
        out.data[flat * M * N + i * N + j] = s;
      }
    }
  });
  return out;
}

/** Applies f to each row of the last axis. */
export function rows(x: Nd, f: (row: Float64Array, r: number) => ArrayLike<number>, width = x.shape[x.shape.length - 1], outShape?: number[]): Nd {
  const D = x.shape[x.shape.length - 1];
  const n = D === 0 ? 0 : x.size / D;
  const out = new Nd(outShape ?? [...x.shape.slice(0, -1), width]);
  for (let r = 0; r < n; r++) out.data.set(f(x.data.subarray(r * D, (r + 1) * D), r), r * width);
  return out;
}

export const softmax = (x: Nd): Nd =>
  rows(x, (row) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((p, q) => p + q, 0);
    return e.map((v) => v / s);
  });

export const logSoftmax = (x: Nd): Nd =>
  rows(x, (row) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((p, v) => p + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  });

export function layerNorm(x: Nd, w: Nd, b: Nd, eps: number): Nd {
  return rows(x, (row) => {
    const mu = row.reduce((p, q) => p + q, 0) / row.length;
    const v = row.reduce((p, q) => p + (q - mu) ** 2, 0) / row.length;
    return row.map((q, j) => ((q - mu) / Math.sqrt(v + eps)) * w.data[j] + b.data[j]);
  });
}

export function crossEntropyPerRow(logits: Nd, labels: ArrayLike<number>): Nd {
  return rows(logits, (row, r) => {
    const m = Math.max(...row);
    return [m + Math.log(row.reduce((p, v) => p + Math.exp(v - m), 0)) - row[labels[r]]];
  }, 1, [logits.shape[0]]);
}

export function indexSelect(x: Nd, axis: number, index: ArrayLike<number>): Nd {
  const shape = [...x.shape];
  shape[axis] = index.length;
  const out = new Nd(shape);
  const strides = contiguousStrides(x.shape);
  forEachIndex(shape, (idx, flat) => (out.data[flat] = x.data[idx.reduce((o, c, i) => o + (i === axis ? index[c] : c) * strides[i], 0)]));
  return out;
}

// Scalar functions with the kernels' semantics.
export const erf = (x: number): number => {
  // Series / continued fraction accurate to ~1e-15, independent of the kernel's approximation.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let s = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      s += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * s);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (ax + f);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
};
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
export const gelu = (x: number): number => 0.5 * x * (1 + erf(x / Math.SQRT2));
export const quickgelu = (x: number): number => x * sigmoid(1.702 * x);
export const powRef = (a: number, b: number): number => (b === 0 ? 1 : a ** b);

/** cols [N, C·kh·kw, Ho·Wo] of x [N, C, H, W] (zero padding). */
export function im2col(x: Nd, kh: number, kw: number, stride: number, padding: number): Nd {
  const [N, C, H, W] = x.shape;
  const Ho = Math.floor((H + 2 * padding - kh) / stride) + 1;
  const Wo = Math.floor((W + 2 * padding - kw) / stride) + 1;
  const K = C * kh * kw;
  const out = new Nd([N, K, Ho * Wo]);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let i = 0; i < kh; i++)
        for (let j = 0; j < kw; j++)
          for (let oh = 0; oh < Ho; oh++)
            for (let ow = 0; ow < Wo; ow++) {
              const h = oh * stride - padding + i;
              const w = ow * stride - padding + j;
              const v = h >= 0 && h < H && w >= 0 && w < W ? x.data[((n * C + c) * H + h) * W + w] : 0;
              out.data[(n * K + (c * kh + i) * kw + j) * Ho * Wo + oh * Wo + ow] = v;
            }
  return out;
}

export function conv2d(x: Nd, w: Nd, stride: number, padding: number, bias?: Nd): Nd {
  const [N, , H, W] = x.shape;
  const [O, C, kh, kw] = w.shape;
  const Ho = Math.floor((H + 2 * padding - kh) / stride) + 1;
  const Wo = Math.floor((W + 2 * padding - kw) / stride) + 1;
  const out = new Nd([N, O, Ho, Wo]);
  forEachIndex(out.shape, ([n, o, oh, ow], flat) => {
    let s = bias ? bias.data[o] : 0;
    for (let c = 0; c < C; c++)
      for (let i = 0; i < kh; i++)
        for (let j = 0; j < kw; j++) {
          const h = oh * stride - padding + i;
          const ww = ow * stride - padding + j;
          if (h >= 0 && h < H && ww >= 0 && ww < W) s += x.data[((n * C + c) * H + h) * W + ww] * w.data[((o * C + c) * kh + i) * kw + j];
        }
    out.data[flat] = s;
  });
  return out;
}

/** Average / max / adaptive-average pooling with PyTorch's window and divisor rules. */
export function pool2d(
  x: Nd,
  kind: 'avg' | 'max' | 'adaptive',
  k: number,
  stride: number,
  padding: number,
  countIncludePad: boolean,
  outSize?: [number, number],
): Nd {
  const [N, C, H, W] = x.shape;
  const Ho = outSize ? outSize[0] : Math.floor((H + 2 * padding - k) / stride) + 1;
  const Wo = outSize ? outSize[1] : Math.floor((W + 2 * padding - k) / stride) + 1;
  const out = new Nd([N, C, Ho, Wo]);
  forEachIndex(out.shape, ([n, c, oh, ow], flat) => {
    let [h0, h1, w0, w1] = [oh * stride - padding, oh * stride - padding + k, ow * stride - padding, ow * stride - padding + k];
    if (kind === 'adaptive') {
      [h0, h1, w0, w1] = [
        Math.floor((oh * H) / Ho),
        Math.ceil(((oh + 1) * H) / Ho),
        Math.floor((ow * W) / Wo),
        Math.ceil(((ow + 1) * W) / Wo),
      ];
    }
    const padded = (Math.min(h1, H + padding) - h0) * (Math.min(w1, W + padding) - w0);
    [h0, h1, w0, w1] = [Math.max(h0, 0), Math.min(h1, H), Math.max(w0, 0), Math.min(w1, W)];
    let acc = kind === 'max' ? -Infinity : 0;
    for (let h = h0; h < h1; h++)
      for (let w = w0; w < w1; w++) {
        const v = x.data[((n * C + c) * H + h) * W + w];
        acc = kind === 'max' ? Math.max(acc, v) : acc + v;
      }
    out.data[flat] = kind === 'max' ? acc : acc / (kind === 'avg' && countIncludePad ? padded : (h1 - h0) * (w1 - w0));
  });
  return out;
}

/** Training-mode batch norm over (N, H, W) per channel, with biased variance. */
export function batchNorm2d(x: Nd, w: Nd, b: Nd, eps: number): Nd {
  const [N, C, H, W] = x.shape;
  const M = N * H * W;
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  forEachIndex(x.shape, ([, c], flat) => (mean[c] += x.data[flat] / M));
  forEachIndex(x.shape, ([, c], flat) => (variance[c] += (x.data[flat] - mean[c]) ** 2 / M));
  return new Nd([...x.shape], x.data.map((v, flat) => {
    const c = Math.floor(flat / (H * W)) % C;
    return ((v - mean[c]) / Math.sqrt(variance[c] + eps)) * w.data[c] + b.data[c];
  }));
}

/** softmax(q·kᵀ·scale)·v per head, keys j > i masked when causal; q [B, L, H, D], k and v [B, S, H, D]. */
export function attention(q: Nd, k: Nd, v: Nd, causal: boolean, scale = 1 / Math.sqrt(q.shape[3])): Nd {
  const [B, L, H, D] = q.shape;
  const S = k.shape[1];
  const out = new Nd([B, L, H, D]);
  const at = (tokens: number, b: number, t: number, h: number) => ((b * tokens + t) * H + h) * D;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < L; i++) {
        const end = causal ? Math.min(i + 1, S) : S;
        const s = Array.from({ length: end }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q.data[at(L, b, i, h) + d] * k.data[at(S, b, j, h) + d];
          return dot * scale;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const sum = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j < end; j++)
          for (let d = 0; d < D; d++) out.data[at(L, b, i, h) + d] += (e[j] / sum) * v.data[at(S, b, j, h) + d];
      }
  return out;
}

/** Self-attention on a packed projection [B, L, 3·E] (q, k, v thirds); returns [B, L, E]. */
export function selfAttention(qkv: Nd, heads: number, causal: boolean): Nd {
  const [B, L, E3] = qkv.shape;
  const E = E3 / 3;
  const part = (p: number) => {
    const x = new Nd([B, L, heads, E / heads]);
    for (let r = 0; r < B * L; r++) x.data.set(qkv.data.subarray(r * E3 + p * E, r * E3 + (p + 1) * E), r * E);
    return x;
  };
  const o = attention(part(0), part(1), part(2), causal);
  return new Nd([B, L, E], o.data);
}
