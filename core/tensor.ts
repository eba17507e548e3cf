// Tensor: a typed, strided view of reference-counted GPU storage.
//
// Views (reshape, permute, slice, expand, …) share storage and differ only in shape, strides and offset;
// kernels read strided inputs directly, so most views never copy. Storage returns its buffer to the pool
// when its last view is disposed. Tensors created inside tidy() are disposed when it returns, except the
// result and anything passed to keep().
import { bytesPerElement, fromHalfBits, makeArray, toHalfBits, type DType, type TypedArray } from './dtype.ts';
import { DTypeError, DisposedError, ShapeError, fmtShape } from './errors.ts';
import { getEngine } from './engine.ts';
import { checkShape, contiguousStrides, sizeOf, type Shape } from './shape.ts';

let nextStorageId = 1;

export class Storage {
  readonly id = nextStorageId++;
  /**
   * Counts in-place writes into this storage (PyTorch's `_version`): a recorded op notes the versions of the
   * tensors it saves, and backward refuses to use one written since.
   */
  version = 0;
  private refs = 1;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number) {}

  static allocate(bytes: number, label?: string): Storage {
    return new Storage(getEngine().pool.acquire(Math.max(bytes, 4), label), bytes);
  }
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) getEngine().pool.release(this.buffer);
  }
  /** Whether more than one tensor (views included) holds this storage: writing it in place would show through. */
  get shared(): boolean {
    return this.refs > 1;
  }
}

// ---- scopes -------------------------------------------------------------------------------------------------
const scopes: Set<Tensor>[] = [];

/** Runs fn and disposes every tensor created inside it except those reachable from its result or kept. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  if (result instanceof Promise) throw new TypeError('tidy(fn): fn must be synchronous (await outside of tidy)');
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors);
  const parent = scopes.at(-1);
  for (const t of scope) {
    if (survivors.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Takes a tensor out of scope tracking: it lives until disposed explicitly. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collectTensors(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into);
  }
}

// ---- tensor -------------------------------------------------------------------------------------------------
/**
 * What a tensor knows of the tape node that recorded it (ops/tape.ts implements it): enough for the backward
 * driver to walk the graph and for dispose() to release the node.
 */
export interface GradNode {
  readonly op: string;
  /** Operands in the op's argument order (null where an operand was a plain number). */
  readonly inputs: readonly (Tensor | null)[];
  /** What the op saved for its backward rule. */
  readonly ctx: Record<string, unknown>;
  /** The nodes that produced the inputs (null for leaves and constants). */
  readonly parents: readonly (GradNode | null)[];
  readonly isReleased: boolean;
  /** Throws if a tensor saved in ctx was written in place after the op saved it (backward would misread it). */
  checkVersions(): void;
  ref(): void;
  unref(): void;
  releaseSaved(): void;
}

let nextTensorId = 1;

/**
 * An n-dimensional array on the GPU: a dtype, a shape and strides over reference-counted storage (views share it).
 * Create with Tensor.from or the creation ops; free with dispose() or tidy().
 */
export class Tensor {
  readonly id = nextTensorId++;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  /** Whether gradients flow to (leaf) or through (interior) this tensor. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after backward(). */
  grad: Tensor | null = null;
  /** The op that produced this tensor, when it was recorded for autodiff. */
  node: GradNode | null = null;
  /** What Tensor.from uploaded, kept for small integer tensors (see hostData). */
  private uploaded: TypedArray | null = null;
  private disposed = false;

  constructor(
    readonly storage: Storage,
    shape: Shape,
    readonly dtype: DType,
    strides?: Shape,
    /** Offset of element [0, …, 0] in the storage, in elements. */
    readonly offset = 0,
  ) {
    this.shape = [...shape];
    this.strides = strides ? [...strides] : contiguousStrides(shape);
    scopes.at(-1)?.add(this);
  }

  /** An uninitialised tensor of `shape` (its contents are whatever the pooled buffer held). */
  static empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape('empty', shape);
    if (dtype === 'f16' && !getEngine().gpu.hasFeature('shader-f16')) {
      throw new DTypeError(`f16 tensors need the WebGPU feature 'shader-f16', which this device (${getEngine().gpu.name}) lacks; use f32`);
    }
    // Buffers are sized in whole 4-byte words (an odd number of f16 values still copies and binds).
    return new Tensor(Storage.allocate(Math.ceil((sizeOf(shape) * bytesPerElement(dtype)) / 4) * 4), shape, dtype);
  }

  /**
   * Uploads host data; the array's length must equal the shape's size. The dtype defaults to the array's
   * (Int32Array → i32, anything else → f32); i32 from other arrays must hold integers; f16 rounds each value
   * to the nearest half (IEEE round-to-nearest-even).
   */
  static from(data: TypedArray | readonly number[], shape?: Shape, dtype?: DType): Tensor {
    const dt = dtype ?? (data instanceof Int32Array ? 'i32' : 'f32');
    let typed: TypedArray;
    if (dt === 'f16') {
      const shp = shape ?? [data.length];
      checkShape('tensor', shp);
      if (sizeOf(shp) !== data.length) throw new ShapeError(`tensor: ${data.length} values do not fill shape ${fmtShape(shp)} (size ${sizeOf(shp)})`);
      const t = Tensor.empty(shp, 'f16');
      const halves = new Uint16Array(Math.ceil(data.length / 2) * 2); // whole 4-byte words
      for (let i = 0; i < data.length; i++) halves[i] = toHalfBits(data[i]);
      if (data.length) getEngine().upload(t.storage.buffer, 0, halves);
      return t;
    }
    if (dt === 'f32') typed = data instanceof Float32Array ? data : Float32Array.from(data);
    else if (data instanceof Int32Array) typed = data;
    else {
      const bad = Array.prototype.findIndex.call(data, (v: number) => !Number.isInteger(v) || v < -2147483648 || v > 2147483647);
      if (bad >= 0) throw new DTypeError(`tensor: value ${data[bad]} at index ${bad} is not a 32-bit integer, but dtype i32 was asked for`);
      typed = Int32Array.from(data);
    }
    const shp = shape ?? [typed.length];
    checkShape('tensor', shp);
    if (sizeOf(shp) !== typed.length) throw new ShapeError(`tensor: ${typed.length} values do not fill shape ${fmtShape(shp)} (size ${sizeOf(shp)})`);
    const t = Tensor.empty(shp, dt);
    if (typed.length) getEngine().upload(t.storage.buffer, 0, typed);
    // A copy: the caller may reuse its array for the next batch.
    if (dt === 'i32' && typed.length <= 1 << 20) t.uploaded = typed.slice();
    return t;
  }

  get size(): number {
    return sizeOf(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  get isContiguous(): boolean {
    let expected = 1;
    for (let i = this.rank - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expected) return false;
      expected *= this.shape[i];
    }
    return true;
  }
  /**
   * A host copy of the values, for small integer tensors made by Tensor.from, so that index ops can validate
   * bounds without a readback; null once an in-place write may have changed them.
   */
  get hostData(): TypedArray | null {
    return this.storage.version === 0 ? this.uploaded : null;
  }

  /** How many in-place writes this tensor's storage has had; views of one storage share the count. */
  get version(): number {
    return this.storage.version;
  }
  /** Records an in-place write into this tensor's storage (every writer into an existing tensor calls it). */
  bumpVersion(): void {
    this.storage.version++;
  }

  /** The GPU buffer, checked for use after dispose; `op` names the caller in the error. */
  bufferFor(op: string): GPUBuffer {
    if (this.disposed) throw new DisposedError(`${op}: tensor #${this.id} ${fmtShape(this.shape)} was used after dispose()`);
    return this.storage.buffer;
  }

  /**
   * Takes over `source`'s storage, dtype and layout (PyTorch's `param.data = …`, which module.half() does): how
   * a model's weights are converted in place without the modules that hold them noticing. `source` must have
   * this shape; it is consumed (disposed). Views taken earlier keep the old values. Not recorded for autodiff,
   * and no version is bumped: no buffer is written, so tensors an op saved still hold the values it used.
   */
  adopt(source: Tensor): void {
    this.bufferFor('adopt');
    source.bufferFor('adopt');
    if (source.shape.length !== this.shape.length || source.shape.some((d, i) => d !== this.shape[i])) {
      throw new ShapeError(`adopt: source ${fmtShape(source.shape)} does not match ${fmtShape(this.shape)}`);
    }
    const self = this as { -readonly [K in 'storage' | 'dtype' | 'strides' | 'offset']: Tensor[K] };
    const old = this.storage;
    self.storage = source.storage.retain();
    self.dtype = source.dtype;
    self.strides = source.strides;
    self.offset = source.offset;
    this.uploaded = source.uploaded;
    old.release();
    source.dispose();
  }

  /** A new view of the same storage (no copy). Views are separate tensors: each must be disposed. */
  view(shape: Shape, strides: Shape = contiguousStrides(shape), offset = this.offset): Tensor {
    this.bufferFor('view');
    return new Tensor(this.storage.retain(), shape, this.dtype, strides, offset);
  }

  /** Frees this tensor (its storage once no view uses it); using it afterwards raises DisposedError. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of scopes) s.delete(this);
    this.storage.release();
    this.node?.unref();
    this.node = null;
    this.grad?.dispose();
    this.grad = null;
  }

  /** Reads the tensor back to the host (contiguous, row-major). */
  async data(): Promise<TypedArray> {
    const buffer = this.bufferFor('data');
    const out = makeArray(this.dtype, this.size);
    if (this.size === 0) return out;
    // Read the span the view covers, then gather on the host: no kernel needed for strided views.
    let lo = this.offset;
    let hi = this.offset;
    for (let i = 0; i < this.rank; i++) {
      const reach = (this.shape[i] - 1) * this.strides[i];
      if (reach < 0) lo += reach;
      else hi += reach;
    }
    // Reads start on a 4-byte boundary (an f16 span may begin mid-word); `skip` elements precede it.
    const bpe = bytesPerElement(this.dtype);
    const start = Math.floor((lo * bpe) / 4) * 4;
    const skip = (lo * bpe - start) / bpe;
    const bytes = await getEngine().read(buffer, start, (hi - lo + 1 + skip) * bpe);
    const span: Float32Array | Int32Array =
      this.dtype === 'f16'
        ? Float32Array.from(new Uint16Array(bytes, 0, Math.floor(bytes.byteLength / 2)), fromHalfBits)
        : this.dtype === 'f32'
          ? new Float32Array(bytes)
          : new Int32Array(bytes);
    lo -= skip;
    if (this.isContiguous) {
      out.set(span.subarray(this.offset - lo, this.offset - lo + this.size));
      return out;
    }
    const idx = new Array<number>(this.rank).fill(0);
    for (let n = 0; n < this.size; n++) {
      let at = this.offset - lo;
      for (let d = 0; d < this.rank; d++) at += idx[d] * this.strides[d];
      out[n] = span[at];
      for (let d = this.rank - 1; d >= 0; d--) {
        if (++idx[d] < this.shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new ShapeError(`item: tensor has shape ${fmtShape(this.shape)}, expected exactly one element`);
    return (await this.data())[0];
  }

  /** Nested arrays, for printing and tests. */
  async array(): Promise<unknown> {
    const flat = Array.from(await this.data());
    const build = (dim: number, at: number): unknown => {
      if (dim === this.rank) return flat[at];
      const step = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, at + i * step));
    };
    return build(0, 0);
  }

  /** "Tensor([2, 3], f32)": the shape, dtype and whether it requires grad, never the values (those need a readback). */
  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
