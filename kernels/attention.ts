// Fused scaled-dot-product attention: softmax(q·kᵀ·scale [+ causal mask])·v for every head at once, forward
// and backward, without materialising the [B, heads, L, S] score matrix.
//
// Why a fused kernel: CLIP's sequences are short (17 tokens for the scene models, 50 for ViT-B/32, 77 for
// text) and narrow heads are cheap for accuracy (the scene models use 8-wide ones), so the unfused path — a
// batched matmul per head, a softmax, another batched matmul and the permutes between head-major and
// token-major layouts — spends its time on thousands of tiny matrices that no matmul tiling fills. For heads
// up to FUSED_HEAD_DIM (32) wide one thread owns one query row of one head; wider heads (64 in the published
// CLIP models) would spill one thread's registers, so a subgroup shares each row (attentionLanes), and
// kernels/policy.ts useFusedAttention says where that beats batched matmuls (causal text heads on lavapipe; not ViT-B/32's image
// heads). Either way it is flash attention's online softmax without the tiling: on lavapipe barriers and
// workgroup memory cost more than re-reading K and V, which stay in the core's cache for the rows of one head.
// The backward keeps only the log-sum-exp of each row and recomputes the probabilities:
//   kernel 1, per query row i:  Δᵢ = dOᵢ·Oᵢ,  dQᵢ = scale · Σⱼ Pᵢⱼ (dOᵢ·Vⱼ − Δᵢ) Kⱼ
//   kernel 2, per key row j:    dVⱼ = Σᵢ Pᵢⱼ dOᵢ,  dKⱼ = scale · Σᵢ Pᵢⱼ (dOᵢ·Vⱼ − Δᵢ) Qᵢ
//
// q, k and v are [B, tokens, heads, headDim] with any strides whose last one is 1, so the thirds of a packed
// QKV projection [B, L, 3·E] are read in place; selfAttention() takes that packed tensor and returns the
// gradient of the packed tensor in one buffer, so nothing is permuted, copied or zero-filled on the way.
import { DTypeError, ShapeError, fmtShape } from '../core/errors.ts';
import { getEngine } from '../core/engine.ts';
import type { DType } from '../core/dtype.ts';
import type { StorageType } from '../core/kernel.ts';
import { F32_MAX, SUBGROUP_DIRECTIVES, halfVecType, launchPerItem, perItemEntry, subgroupItemEntry, vecType, vectorPrelude, type Width } from './wgsl.ts';
import { Tensor } from '../core/tensor.ts';
import { contiguousCopy } from './elementwise.ts';

const WG = 64;
/** Widest head the kernels accept. */
export const MAX_HEAD_DIM = 128;
/**
 * Widest head one thread owns whole (`npm run bench -- --only attention`): at 16 and 32 the fused kernels are
 * 3–4× faster forward + backward than batched matmuls; at 64 a thread's rows no longer fit in registers, so
 * wider heads share each row across a subgroup (attentionLanes) and kernels/policy.ts decides per case.
 */
export const FUSED_HEAD_DIM = 32;

export interface AttentionOptions {
  /** Query i attends to keys j ≤ i only (CLIP's text encoder). */
  causal?: boolean;
  /** Multiplies q·k; default 1/√headDim. */
  scale?: number;
}

/** Where one [B, tokens, heads, headDim] operand lives: a buffer and strides per batch, token and head. */
interface HeadView {
  buffer: GPUBuffer;
  offset: number;
  strides: [number, number, number];
}

interface Dims {
  B: number;
  H: number;
  L: number;
  S: number;
  D: number;
  /** f32, or f16 (read as f32, statistics in f32). */
  dtype: DType;
}

function operand(op: string, t: Tensor): HeadView {
  return { buffer: t.bufferFor(op), offset: t.offset, strides: [t.strides[0], t.strides[1], t.strides[2]] };
}

/** vec4 loads when the head and every offset and stride are multiples of 4 floats. */
function widthOf(D: number, operands: HeadView[]): Width {
  return D % 4 === 0 && operands.every((o) => o.offset % 4 === 0 && o.strides.every((s) => s % 4 === 0)) ? 4 : 1;
}

// The head width is a compile-time constant (one pipeline per head width a model uses, not per batch or
// sequence length): the loops over it unroll and the per-thread rows live in registers. With the width in a
// uniform the rows were private arrays in scratch memory and the kernels ran 3× slower on lavapipe.
function prelude(w: Width, D: number, lanes: number): string {
  return `${vectorPrelude(w)}\nconst W = ${D / w}u;\nconst LANES = ${lanes}u;\nconst C = ${D / w / lanes}u;`;
}

/**
 * Threads per query (or key) row. Heads up to FUSED_HEAD_DIM wide: one thread owns a whole row, its values in
 * registers. Wider heads (CLIP's 64) spill one thread's registers, so where the device has fixed-width
 * subgroups a subgroup of lanes shares each row: lane ℓ owns the vec4 chunks ℓ, ℓ + lanes, … (neighbouring
 * lanes read neighbouring memory) and dot products are finished with subgroupAdd. 1 where that is not possible.
 */
export function attentionLanes(D: number, w: Width): number {
  const lanes = getEngine().gpu.subgroupSize;
  const W = D / w;
  return D > FUSED_HEAD_DIM && lanes !== null && lanes > 1 && W % lanes === 0 && WG % lanes === 0 ? lanes : 1;
}

/** A dot product's partial sum finished across the lanes that share a row. */
const reduce = (lanes: number, v: string) => (lanes > 1 ? `subgroupAdd(${v})` : v);
/** A loop over this lane's chunks of a head: `cc` indexes registers, `c` the head. */
const CHUNKS = 'for (var cc = 0u; cc < C; cc++) { let c = lane + cc * LANES;';

/** Uniform fields (and values, in units of V) for operands named by their one-letter prefixes. */
function operandUniforms(w: number, named: Record<string, HeadView>): { types: Record<string, 'u32'>; values: Record<string, number> } {
  const types: Record<string, 'u32'> = {};
  const values: Record<string, number> = {};
  for (const [p, o] of Object.entries(named)) {
    for (const [field, value] of [
      ['off', o.offset],
      ['B', o.strides[0]],
      ['T', o.strides[1]],
      ['H', o.strides[2]],
    ] as const) {
      types[`${p}${field}`] = 'u32';
      values[`${p}${field}`] = value / w;
    }
  }
  return { types, values };
}

/** WGSL expression: the start of row (b, token, h) of operand p. */
const rowAt = (p: string, token: string) => `u.${p}off + b * u.${p}B + ${token} * u.${p}T + h * u.${p}H`;

// Every kernel decodes its (batch, head, row) the same way; `rows` is B·H·(L or S). With lanes > 1 the row
// index is the subgroup's (a whole subgroup leaves together, so the early return is uniform).
const ROW_ID = (len: string, lanes: number) => `${
  lanes > 1
    ? subgroupItemEntry(WG, lanes, 't')
    : `${perItemEntry(WG)}
  let lane = 0u;`
}
  if (t >= u.rows) { return; }
  let r = t % u.${len};
  let bh = t / u.${len};
  let h = bh % u.H;
  let b = bh / u.H;`;

const DIM_UNIFORMS = { rows: 'u32', H: 'u32', L: 'u32', S: 'u32', causal: 'u32', scale: 'f32' } as const;

/**
 * Compiles (once) and dispatches one of the kernels. `half` names the buffers held in f16: their storage type
 * becomes vec4<f16> or f16; the kernels read every operand as V (`V(q[i])`, the one widening) and store through
 * the binding's type (`o_t(value)`, the one rounding), so the arithmetic and the online-softmax statistics stay
 * in f32 whatever the storage.
 */
function launch(
  name: string,
  w: Width,
  lanes: number,
  bindings: { outputs: Record<string, StorageType>; inputs: Record<string, StorageType>; half: string[] },
  named: Record<string, HeadView>,
  body: string,
  buffers: Record<string, GPUBuffer>,
  dims: Dims,
  rows: number,
  causal: boolean,
  scale: number,
): void {
  const { types, values } = operandUniforms(w, named);
  const { outputs, inputs, half } = bindings;
  const stored = (m: Record<string, StorageType>) =>
    Object.fromEntries(Object.entries(m).map(([k, t]) => [k, half.includes(k) ? halfVecType(w) : t])) as Record<string, StorageType>;
  const kernelName = `${name}${w === 4 ? '_vec4' : ''}_d${dims.D}${lanes > 1 ? `_lanes${lanes}` : ''}${half.length ? '_f16' : ''}`;
  const spec = () => ({
    name: kernelName,
    outputs: stored(outputs),
    inputs: stored(inputs),
    uniforms: { ...DIM_UNIFORMS, ...types },
    wgsl: `${prelude(w, dims.D, lanes)}\n${body}`,
    directives: lanes > 1 ? SUBGROUP_DIRECTIVES : [],
  });
  const uniforms = { rows, H: dims.H, L: dims.L, S: dims.S, causal: causal ? 1 : 0, scale, ...values };
  launchPerItem(kernelName, spec, buffers, uniforms, rows * lanes, WG);
}

/** Forward: O [B, L, H, D] (contiguous) and the log-sum-exp of every score row, [B, H, L]. */
function forwardRaw(q: HeadView, k: HeadView, v: HeadView, dims: Dims, causal: boolean, scale: number): { o: Tensor; lse: Tensor } {
  const op = 'attention';
  const { B, H, L, D } = dims;
  const o = Tensor.empty([B, L, H, D], dims.dtype);
  const lse = Tensor.empty([B, H, L]);
  const w = widthOf(D, [q, k, v]);
  const V = vecType(w);
  const lanes = attentionLanes(D, w);
  launch(
    'attention',
    w,
    lanes,
    { outputs: { o: V, lse: 'f32' }, inputs: { q: V, k: V, v: V }, half: dims.dtype === 'f16' ? ['q', 'k', 'v', 'o'] : [] },
    { q, k, v },
    `${ROW_ID('L', lanes)}
  let qb = ${rowAt('q', 'r')};
  var qi: array<V, C>;
  var acc: array<V, C>;
  ${CHUNKS} qi[cc] = V(q[qb + c]) * u.scale; acc[cc] = V(0.0); }
  let end = select(u.S, min(r + 1u, u.S), u.causal != 0u);
  // Online softmax: m is the running maximum, l the running sum of exp(s − m), acc the running Σ exp(s − m)·v.
  var m = -${F32_MAX};
  var l = 0.0;
  for (var j = 0u; j < end; j++) {
    let kb = ${rowAt('k', 'j')};
    var sv = V(0.0);
    ${CHUNKS} sv += qi[cc] * V(k[kb + c]); }
    let s = ${reduce(lanes, 'hsum(sv)')};
    let mNew = max(m, s);
    let correction = exp(m - mNew);
    let p = exp(s - mNew);
    l = l * correction + p;
    let vb = ${rowAt('v', 'j')};
    ${CHUNKS} acc[cc] = acc[cc] * correction + p * V(v[vb + c]); }
    m = mNew;
  }
  let inv = 1.0 / l;
  let ob = ((b * u.L + r) * u.H + h) * W;
  ${CHUNKS} o[ob + c] = o_t(acc[cc] * inv); }
  lse[t] = m + log(l);
}`,
    { o: o.bufferFor(op), lse: lse.bufferFor(op), q: q.buffer, k: k.buffer, v: v.buffer },
    dims,
    B * H * L,
    causal,
    scale,
  );
  return { o, lse };
}

/** A contiguous [B, tokens, H, D] tensor as an operand. */
function denseOperand(op: string, t: Tensor, dims: Dims, tokens: number): HeadView {
  return { buffer: t.bufferFor(op), offset: t.offset, strides: [tokens * dims.H * dims.D, dims.H * dims.D, dims.D] };
}

/** Backward: writes dQ, dK, dV through their operands (views the caller allocated). */
function backwardRaw(
  q: HeadView,
  k: HeadView,
  v: HeadView,
  oT: Tensor,
  lse: Tensor,
  g: Tensor,
  dq: HeadView,
  dkv: { k: HeadView; v: HeadView },
  dims: Dims,
  causal: boolean,
  scale: number,
): void {
  const op = 'attentionBackward';
  const { B, H, L, S, D } = dims;
  if (g.dtype !== dims.dtype) throw new DTypeError(`${op}: the output and its gradient must share a dtype, got ${dims.dtype} and ${g.dtype}`);
  // dK and dV share one output binding (one buffer, two views): a dispatch binds each writable buffer once.
  if (dkv.k.buffer !== dkv.v.buffer) throw new ShapeError('attention backward: dK and dV must be views of one buffer');
  // f16 operands are read as f32 (scores, probabilities, δ and the sums in f32); dQ, dK, dV round once.
  const half = dims.dtype === 'f16';
  const gc = contiguousCopy(g);
  const delta = Tensor.empty([B, H, L]);
  const [o, go] = [denseOperand(op, oT, dims, L), denseOperand(op, gc, dims, L)];
  const w = widthOf(D, [q, k, v, o, go, dq, dkv.k, dkv.v]);
  const V = vecType(w);
  const lanes = attentionLanes(D, w);
  launch(
    'attentionBackward_dq',
    w,
    lanes,
    { outputs: { dq: V, delta: 'f32' }, inputs: { q: V, k: V, v: V, o: V, g: V, lse: 'f32' }, half: half ? ['q', 'k', 'v', 'o', 'g', 'dq'] : [] },
    { q, k, v, o, g: go, d: dq },
    `${ROW_ID('L', lanes)}
  let qb = ${rowAt('q', 'r')};
  let gb = ${rowAt('g', 'r')};
  let ob = ${rowAt('o', 'r')};
  var qi: array<V, C>;
  var gi: array<V, C>;
  var acc: array<V, C>;
  var dv = V(0.0);
  ${CHUNKS} qi[cc] = V(q[qb + c]) * u.scale; gi[cc] = V(g[gb + c]); acc[cc] = V(0.0); dv += gi[cc] * V(o[ob + c]); }
  let di = ${reduce(lanes, 'hsum(dv)')};
  let li = lse[t];
  let end = select(u.S, min(r + 1u, u.S), u.causal != 0u);
  for (var j = 0u; j < end; j++) {
    let kb = ${rowAt('k', 'j')};
    let vb = ${rowAt('v', 'j')};
    var sv = V(0.0);
    var pv = V(0.0);
    ${CHUNKS} sv += qi[cc] * V(k[kb + c]); pv += gi[cc] * V(v[vb + c]); }
    let ds = exp(${reduce(lanes, 'hsum(sv)')} - li) * (${reduce(lanes, 'hsum(pv)')} - di);
    ${CHUNKS} acc[cc] += ds * V(k[kb + c]); }
  }
  let db = ${rowAt('d', 'r')};
  ${CHUNKS} dq[db + c] = dq_t(acc[cc] * u.scale); }
  delta[t] = di;
}`,
    { dq: dq.buffer, delta: delta.bufferFor(op), q: q.buffer, k: k.buffer, v: v.buffer, o: o.buffer, g: go.buffer, lse: lse.bufferFor(op) },
    dims,
    B * H * L,
    causal,
    scale,
  );
  launch(
    'attentionBackward_dkdv',
    w,
    lanes,
    { outputs: { dkv: V }, inputs: { q: V, k: V, v: V, g: V, lse: 'f32', delta: 'f32' }, half: half ? ['q', 'k', 'v', 'g', 'dkv'] : [] },
    { q, k, v, g: go, e: dkv.k, f: dkv.v },
    `${ROW_ID('S', lanes)}
  let kb = ${rowAt('k', 'r')};
  let vb = ${rowAt('v', 'r')};
  var kj: array<V, C>;
  var vj: array<V, C>;
  var dk: array<V, C>;
  var dv: array<V, C>;
  ${CHUNKS} kj[cc] = V(k[kb + c]) * u.scale; vj[cc] = V(v[vb + c]); dk[cc] = V(0.0); dv[cc] = V(0.0); }
  let start = select(0u, r, u.causal != 0u);
  for (var i = start; i < u.L; i++) {
    let qb = ${rowAt('q', 'i')};
    let gb = ${rowAt('g', 'i')};
    let row = bh * u.L + i;
    var sv = V(0.0);
    var pv = V(0.0);
    ${CHUNKS} sv += V(q[qb + c]) * kj[cc]; pv += V(g[gb + c]) * vj[cc]; }
    let p = exp(${reduce(lanes, 'hsum(sv)')} - lse[row]);
    let ds = p * (${reduce(lanes, 'hsum(pv)')} - delta[row]);
    ${CHUNKS} dv[cc] += p * V(g[gb + c]); dk[cc] += ds * V(q[qb + c]); }
  }
  let eb = ${rowAt('e', 'r')};
  let fb = ${rowAt('f', 'r')};
  ${CHUNKS} dkv[eb + c] = dkv_t(dk[cc] * u.scale); dkv[fb + c] = dkv_t(dv[cc]); }
}`,
    { dkv: dkv.k.buffer, q: q.buffer, k: k.buffer, v: v.buffer, g: go.buffer, lse: lse.bufferFor(op), delta: delta.bufferFor(op) },
    dims,
    B * H * S,
    causal,
    scale,
  );
  delta.dispose();
  gc.dispose();
}

/** Checks q [B, L, H, D], k and v [B, S, H, D] and returns the dims; operands get a unit last stride. */
function dimsOf(q: Tensor, k: Tensor, v: Tensor): Dims {
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.rank !== 4) throw new ShapeError(`attention: ${name} must be [batch, tokens, heads, headDim], got ${fmtShape(t.shape)}`);
    if ((t.dtype !== 'f32' && t.dtype !== 'f16') || t.dtype !== q.dtype) {
      throw new DTypeError(`attention: q, k and v must all be f32 or all f16, got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
    }
  }
  const [B, L, H, D] = q.shape;
  const S = k.shape[1];
  const want = [B, S, H, D];
  if (k.shape.some((d, i) => d !== want[i]) || v.shape.some((d, i) => d !== want[i])) {
    throw new ShapeError(`attention: k and v must both be [${want}] for q ${fmtShape(q.shape)}, got k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}`);
  }
  if (D > MAX_HEAD_DIM) throw new ShapeError(`attention: head dim ${D} exceeds the fused kernel's ${MAX_HEAD_DIM}`);
  if (S === 0) throw new ShapeError('attention: no keys (S = 0)');
  return { B, H, L, S, D, dtype: q.dtype };
}

/** A view with unit last stride (the kernels read rows as runs of floats), copying only when needed. */
const unitLastStride = (t: Tensor) => (t.strides[3] === 1 ? t.view(t.shape, t.strides) : contiguousCopy(t));

/** The q, k and v views ([B, L, H, D]) of a packed projection [B, L, 3·E] (PyTorch's in_proj order). */
function splitPacked(qkv: Tensor, heads: number): [Tensor, Tensor, Tensor] {
  const [B, L, E3] = qkv.shape;
  const E = E3 / 3;
  const D = E / heads;
  const strides = [L * E3, E3, D, 1];
  return [0, 1, 2].map((part) => qkv.view([B, L, heads, D], strides, qkv.offset + part * E)) as [Tensor, Tensor, Tensor];
}


/** What the backward kernels need from a forward: the operands as read, the output and each row's log-sum-exp. */
export interface AttentionSaved {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  causal: boolean;
  scale: number;
}

/**
 * Forward of attention over heads: q [B, L, H, D], k and v [B, S, H, D]; `o` [B, L, H, D] is the result. The
 * caller owns every tensor returned.
 */
export function attentionForward(q: Tensor, k: Tensor, v: Tensor, { causal = false, scale }: AttentionOptions = {}): AttentionSaved {
  const dims = dimsOf(q, k, v);
  const s = scale ?? 1 / Math.sqrt(dims.D);
  const [qv, kv, vv] = [q, k, v].map(unitLastStride);
  const { o, lse } = forwardRaw(operand('attention', qv), operand('attention', kv), operand('attention', vv), dims, causal, s);
  return { q: qv, k: kv, v: vv, o, lse, causal, scale: s };
}

/** Backward of attentionForward(): [dq, dk, dv], dk and dv two halves of one buffer. */
export function attentionBackward(g: Tensor, { q, k, v, o, lse, causal, scale }: AttentionSaved, needs: readonly boolean[]): (Tensor | null)[] {
  const dims = dimsOf(q, k, v);
  const dq = Tensor.empty(q.shape, dims.dtype);
  const dkv = Tensor.empty([2, ...k.shape], dims.dtype);
  const dk = dkv.view(k.shape, undefined, 0);
  const dv = dkv.view(k.shape, undefined, k.size);
  const op = 'attentionBackward';
  backwardRaw(operand(op, q), operand(op, k), operand(op, v), o, lse, g, operand(op, dq), { k: operand(op, dk), v: operand(op, dv) }, dims, causal, scale);
  dkv.dispose();
  return [needs[0] ? dq : (dq.dispose(), null), needs[1] ? dk : (dk.dispose(), null), needs[2] ? dv : (dv.dispose(), null)];
}

/**
 * Forward of self-attention on a packed projection: qkv [B, L, 3·E] holds Q, K and V side by side (each
 * E = heads · D wide, as x·in_proj_weightᵀ gives them); `out` [B, L, E] has the heads merged. The caller owns
 * every tensor returned.
 */
export function selfAttentionForward(qkv: Tensor, heads: number, { causal = false, scale }: AttentionOptions = {}): { out: Tensor; saved: AttentionSaved } {
  if (qkv.rank !== 3 || qkv.shape[2] % (3 * heads) !== 0) {
    throw new ShapeError(`selfAttention: qkv must be [batch, tokens, 3 · heads · headDim] with ${heads} heads, got ${fmtShape(qkv.shape)}`);
  }
  const packed = contiguousCopy(qkv);
  const [q, k, v] = splitPacked(packed, heads);
  packed.dispose();
  const dims = dimsOf(q, k, v);
  const s = scale ?? 1 / Math.sqrt(dims.D);
  const { o, lse } = forwardRaw(operand('selfAttention', q), operand('selfAttention', k), operand('selfAttention', v), dims, causal, s);
  return { out: o.view([dims.B, dims.L, heads * dims.D]), saved: { q, k, v, o, lse, causal, scale: s } };
}

/** Backward of selfAttentionForward(): d(qkv) [B, L, 3·E], its thirds written in place by the two kernels. */
export function selfAttentionBackward(g: Tensor, { q, k, v, o, lse, causal, scale }: AttentionSaved): Tensor {
  const dims = dimsOf(q, k, v);
  const dqkv = Tensor.empty([dims.B, dims.L, 3 * dims.H * dims.D], dims.dtype);
  const [dq, dk, dv] = splitPacked(dqkv, dims.H);
  const op = 'selfAttentionBackward';
  backwardRaw(operand(op, q), operand(op, k), operand(op, v), o, lse, g, operand(op, dq), { k: operand(op, dk), v: operand(op, dv) }, dims, causal, scale);
  for (const t of [dq, dk, dv]) t.dispose();
  return dqkv;
}
