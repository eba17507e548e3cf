// Gathers along one axis (index_select, embedding lookup) and the matching scatter-add for the backward; on
// f32, i32 and f16 (copied as is; its scatter-add accumulates in f32 and rounds once).
//
// x is viewed as [outer, L, inner] around the indexed axis. The forward is one thread per output element.
// The backward has no float atomics in WGSL, so instead of racing, one thread owns one (outer, inner)
// column of the gradient and walks the indices in order: deterministic, and for an embedding table
// (outer = 1, inner = width) it is `width` threads each streaming through the batch once.
import { DTypeError, IndexError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import { grid, perItemEntry } from './wgsl.ts';
import { normalizeAxis, sizeOf } from '../core/shape.ts';
import { Tensor } from '../core/tensor.ts';
import { zeros } from './creation.ts';
import { contiguousCopy, elementwise } from './elementwise.ts';

const WG = 64;

function checkIndex(op: string, index: Tensor, length: number): void {
  if (index.dtype !== 'i32') throw new DTypeError(`${op}: index must be i32, got ${index.dtype}`);
  if (index.rank !== 1) throw new ShapeError(`${op}: index must be 1-D, got ${fmtShape(index.shape)}`);
  const host = index.hostData;
  if (host) {
    const bad = host.findIndex((v) => v < 0 || v >= length);
    if (bad >= 0) throw new IndexError(`${op}: index ${host[bad]} at position ${bad} is outside [0, ${length})`);
  }
}

/** out[o, j, i] = x[o, index[j], i]. */
export function indexSelectRaw(x: Tensor, axis: number, index: Tensor): Tensor {
  const op = 'indexSelect';
  const a = normalizeAxis(op, axis, x.rank);
  const L = x.shape[a];
  checkIndex(op, index, L);
  const inner = sizeOf(x.shape.slice(a + 1));
  const n = index.shape[0];
  const dtype = x.dtype; // f16 is copied as f16: a gather does no arithmetic
  const [src, idx] = [contiguousCopy(x), contiguousCopy(index)];
  const out = Tensor.empty([...x.shape.slice(0, a), n, ...x.shape.slice(a + 1)], dtype);
  const total = out.size;
  const engine = getEngine();
  const kernel = engine.kernel(`gather:${dtype}`, () => ({
    name: `indexSelect(${dtype})`,
    outputs: { out: dtype, flag: 'u32' as const },
    inputs: { x: dtype, index: 'i32' as const },
    uniforms: { total: 'u32', n: 'u32', L: 'u32', inner: 'u32', off: 'u32', offI: 'u32', errCode: 'u32' } as const,
    directives: dtype === 'f16' ? ['enable f16;'] : [],
    wgsl: `
${perItemEntry(WG)}
  if (t >= u.total) { return; }
  let i = t % u.inner;
  let j = (t / u.inner) % u.n;
  let o = t / (u.inner * u.n);
  let k = index[u.offI + j];
  if (k < 0 || u32(k) >= u.L) { flag[0] = u.errCode; out[t] = x[u.off]; return; }
  out[t] = x[u.off + (o * u.L + u32(k)) * u.inner + i];
}`,
  }));
  if (total > 0) {
    engine.dispatch(
      kernel,
      { out: out.bufferFor(op), flag: engine.errorFlag, x: src.bufferFor(op), index: idx.bufferFor(op) },
      {
        total,
        n,
        L,
        inner,
        off: src.offset,
        offI: idx.offset,
        errCode: engine.errorCode(`${op}: an index is outside [0, ${L}) on axis ${a} of ${fmtShape(x.shape)}`),
      },
      grid(Math.ceil(total / WG)),
    );
  }
  src.dispose();
  idx.dispose();
  return out;
}

/** dx[o, index[j], i] += g[o, j, i] for a dx of `shape`, in index order. */
export function indexSelectBackwardRaw(g: Tensor, shape: readonly number[], axis: number, index: Tensor): Tensor {
  const op = 'indexSelectBackward';
  const L = shape[axis];
  const outer = sizeOf(shape.slice(0, axis));
  const inner = sizeOf(shape.slice(axis + 1));
  const n = index.shape[0];
  const [gc, idx] = [contiguousCopy(g), contiguousCopy(index)];
  const dx = zeros(shape);
  const columns = outer * inner;
  const half = g.dtype === 'f16';
  const source = `
${perItemEntry(WG, 'c')}
  if (c >= u.columns) { return; }
  let o = c / u.inner;
  let i = c % u.inner;
  for (var j = 0u; j < u.n; j++) {
    let k = min(u32(max(index[u.offI + j], 0)), u.L - 1u);
    let at = (o * u.L + k) * u.inner + i;
    dx[at] = dx[at] + f32(g[u.offG + (o * u.n + j) * u.inner + i]);
  }
}`;
  const kernel = getEngine().kernel(`scatterAdd:${g.dtype}`, () => ({
    name: `scatterAdd(${g.dtype})`,
    outputs: { dx: 'f32' as const },
    inputs: { g: g.dtype, index: 'i32' as const },
    uniforms: { columns: 'u32', n: 'u32', L: 'u32', inner: 'u32', offG: 'u32', offI: 'u32' } as const,
    wgsl: source,
  }));
  if (columns > 0 && n > 0) {
    getEngine().dispatch(
      kernel,
      { dx: dx.bufferFor(op), g: gc.bufferFor(op), index: idx.bufferFor(op) },
      { columns, n, L, inner, offG: gc.offset, offI: idx.offset },
      grid(Math.ceil(columns / WG)),
    );
  }
  gc.dispose();
  idx.dispose();
  if (!half) return dx;
  const rounded = elementwise('toF16', [dx]); // accumulated in f32, rounded once
  dx.dispose();
  return rounded;
}
