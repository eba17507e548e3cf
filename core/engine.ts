// The execution engine: compiles kernels from typed specs, records dispatches into one command encoder and
// submits them in batches, and reads buffers back only when asked.
//
// Per-dispatch uniforms (shapes, strides, scalars) are appended to a CPU-side arena and bound with a dynamic
// offset, so a pipeline serves every shape and one bind group serves every dispatch over the same buffers.
// The arena is uploaded with a single writeBuffer right before its batch is submitted.
import { GpuError, IndexError } from './errors.ts';
import { gpu, type Gpu } from './device.ts';
import { BufferPool, type MemoryStats } from './pool.ts';

/** Element type of a storage binding; vec4<f32> lets a kernel load four floats at once. */
export type StorageType = 'f32' | 'i32' | 'u32' | 'vec4<f32>';
/** Scalars, or `vec8u`: eight u32 (shape / strides up to rank 8), packed as array<vec4<u32>, 2>. */
export type UniformType = 'u32' | 'i32' | 'f32' | 'vec8u';

export interface KernelSpec {
  /** Name used in pipeline labels and error messages. */
  name: string;
  /** Written buffers, bound first (binding 0…), declared read_write. */
  outputs: Record<string, StorageType>;
  /** Read-only buffers, bound after the outputs. */
  inputs: Record<string, StorageType>;
  /** Fields of the uniform struct `u`. */
  uniforms: Record<string, UniformType>;
  /** WGSL with an entry point `main`; it sees the generated bindings and `u`. */
  wgsl: string;
  /** Directives placed before all declarations, e.g. 'enable subgroups;' (the device must have the feature). */
  directives?: string[];
}

type BufferArgs<S extends KernelSpec> = { [K in keyof S['outputs'] | keyof S['inputs']]: GPUBuffer };
type UniformArgs<S extends KernelSpec> = { [K in keyof S['uniforms']]: number | readonly number[] };

export const MAX_RANK = 8;
const UNIFORM_ALIGN = 256; // minUniformBufferOffsetAlignment on every adapter we know
const ARENA_BYTES = 1 << 18;
const MAX_DISPATCHES_PER_BATCH = 128;
/** Dispatches timed by one profile() call (two timestamps each). */
const PROFILE_SLOTS = 2048;

interface Field {
  name: string;
  type: UniformType;
  offset: number; // bytes
}

/** A compiled kernel: its pipeline, bind group layout and uniform layout. */
export class Kernel<S extends KernelSpec = KernelSpec> {
  readonly fields: Field[];
  readonly uniformBytes: number;
  readonly bindingNames: string[];
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly source: string;

  constructor(device: GPUDevice, readonly spec: S) {
    // vec8u fields first so every field is naturally aligned without padding.
    const entries = Object.entries(spec.uniforms) as [string, UniformType][];
    const ordered = [...entries.filter(([, t]) => t === 'vec8u'), ...entries.filter(([, t]) => t !== 'vec8u')];
    let offset = 0;
    this.fields = ordered.map(([name, type]) => {
      const f = { name, type, offset };
      offset += type === 'vec8u' ? 32 : 4;
      return f;
    });
    this.uniformBytes = Math.max(16, Math.ceil(offset / 16) * 16);
    this.bindingNames = [...Object.keys(spec.outputs), ...Object.keys(spec.inputs)];

    const decl: string[] = [...(spec.directives ?? [])];
    let binding = 0;
    for (const [name, type] of Object.entries(spec.outputs)) decl.push(`@group(0) @binding(${binding++}) var<storage, read_write> ${name}: array<${type}>;`);
    for (const [name, type] of Object.entries(spec.inputs)) decl.push(`@group(0) @binding(${binding++}) var<storage, read> ${name}: array<${type}>;`);
    const members = this.fields.map((f) => `  ${f.name}: ${f.type === 'vec8u' ? 'array<vec4<u32>, 2>' : f.type},`);
    if (members.length === 0) members.push('  _unused: u32,');
    decl.push(`struct Uniforms {\n${members.join('\n')}\n}`, `@group(0) @binding(${binding}) var<uniform> u: Uniforms;`);
    decl.push('fn at8(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }');
    this.source = `${decl.join('\n')}\n${spec.wgsl}`;

    const layoutEntries: GPUBindGroupLayoutEntry[] = this.bindingNames.map((name, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: name in spec.outputs ? 'storage' : 'read-only-storage' },
    }));
    layoutEntries.push({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
    this.layout = device.createBindGroupLayout({ label: spec.name, entries: layoutEntries });
    const module = device.createShaderModule({ label: spec.name, code: this.source });
    this.pipeline = device.createComputePipeline({
      label: spec.name,
      layout: device.createPipelineLayout({ label: spec.name, bindGroupLayouts: [this.layout] }),
      compute: { module, entryPoint: 'main' },
    });
  }

  writeUniforms(view: DataView, base: number, values: Record<string, number | readonly number[]>): void {
    for (const f of this.fields) {
      const v = values[f.name];
      if (v === undefined) throw new GpuError(`${this.spec.name}: uniform '${f.name}' was not given`);
      if (f.type === 'vec8u') {
        const arr = v as readonly number[];
        if (arr.length > MAX_RANK) throw new GpuError(`${this.spec.name}: uniform '${f.name}' has ${arr.length} entries, at most ${MAX_RANK} fit`);
        for (let i = 0; i < MAX_RANK; i++) view.setUint32(base + f.offset + 4 * i, arr[i] ?? 0, true);
      } else if (f.type === 'f32') view.setFloat32(base + f.offset, v as number, true);
      else if (f.type === 'i32') view.setInt32(base + f.offset, v as number, true);
      else view.setUint32(base + f.offset, v as number, true);
    }
  }
}

/** Memory statistics plus pipeline, dispatch, submit and readback counts since the engine started. */
export interface EngineStats extends MemoryStats {
  pipelinesCompiled: number;
  dispatches: number;
  submits: number;
  readbacks: number;
}

export class Engine {
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  private kernels = new Map<string, Kernel>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arena: GPUBuffer;
  private arenaCpu = new ArrayBuffer(ARENA_BYTES);
  private arenaView = new DataView(this.arenaCpu);
  private arenaUsed = 0;
  private pendingDispatches = 0;
  private counters = { dispatches: 0, submits: 0, readbacks: 0 };
  private querySet: GPUQuerySet | null = null;
  private timing: { querySet: GPUQuerySet; passes: number } | null = null;
  private profiling: { querySet: GPUQuerySet; names: string[]; byGrid: boolean } | null = null;
  private readonly maxWorkgroups: number;
  /**
   * A u32 that kernels set to a non-zero code when they meet bad data they cannot report otherwise (an
   * out-of-range index read from GPU memory). Every readback also reads it and throws the matching error.
   */
  readonly errorFlag: GPUBuffer;
  private errorCodes: string[] = [''];

  constructor(readonly gpu: Gpu) {
    this.device = gpu.device;
    this.pool = new BufferPool(this.device, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    this.arena = this.device.createBuffer({ label: 'uniform arena', size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.maxWorkgroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    this.errorFlag = this.device.createBuffer({ label: 'error flag', size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  }

  /** The code a kernel writes to errorFlag to report `message`. */
  errorCode(message: string): number {
    const at = this.errorCodes.indexOf(message);
    return at > 0 ? at : this.errorCodes.push(message) - 1;
  }

  /** The kernel for `key`, compiled on first use; `make` builds its spec. */
  kernel<S extends KernelSpec>(key: string, make: () => S): Kernel<S> {
    let k = this.kernels.get(key);
    if (!k) {
      k = new Kernel(this.device, make());
      this.kernels.set(key, k);
    }
    return k as unknown as Kernel<S>;
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  private bindGroup(kernel: Kernel, buffers: GPUBuffer[]): GPUBindGroup {
    const key = `${kernel.spec.name}|${buffers.map((b) => this.bufferId(b)).join(',')}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const limit = this.device.limits.maxStorageBufferBindingSize;
      buffers.forEach((b, i) => {
        if (b.size > limit) {
          throw new GpuError(`${kernel.spec.name}: '${kernel.bindingNames[i]}' is a ${b.size}-byte buffer, over the device's ${limit}-byte storage binding limit; process the data in smaller batches`);
        }
      });
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: i, resource: { buffer } }));
      entries.push({ binding: buffers.length, resource: { buffer: this.arena, size: kernel.uniformBytes } });
      group = this.device.createBindGroup({ label: kernel.spec.name, layout: kernel.layout, entries });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  /** Records one dispatch. Nothing runs until the batch is flushed. */
  dispatch<S extends KernelSpec>(kernel: Kernel<S>, buffers: BufferArgs<S>, uniforms: UniformArgs<S>, workgroups: readonly [number, number?, number?]): void {
    const [x, y = 1, z = 1] = workgroups;
    if (x > this.maxWorkgroups || y > this.maxWorkgroups || z > this.maxWorkgroups) {
      throw new GpuError(`${kernel.spec.name}: dispatch of [${x}, ${y}, ${z}] workgroups exceeds the device limit of ${this.maxWorkgroups} per dimension`);
    }
    if (x * y * z === 0) return;
    this.gpu.throwIfFailed();
    if (this.arenaUsed + kernel.uniformBytes > ARENA_BYTES || this.pendingDispatches >= MAX_DISPATCHES_PER_BATCH) this.flush();
    const list = kernel.bindingNames.map((n) => (buffers as Record<string, GPUBuffer>)[n]);
    const offset = this.arenaUsed;
    kernel.writeUniforms(this.arenaView, offset, uniforms as Record<string, number | readonly number[]>);
    this.arenaUsed = Math.ceil((offset + kernel.uniformBytes) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    const profiled = this.profiling !== null && this.profiling.names.length < PROFILE_SLOTS;
    if (profiled) this.endPass();
    const pass = profiled ? this.profiledPass(this.profiling!.byGrid ? `${kernel.spec.name} [${x},${y},${z}]` : kernel.spec.name) : this.computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup(kernel, list), [offset]);
    pass.dispatchWorkgroups(x, y, z);
    if (profiled) this.endPass();
    this.pendingDispatches++;
    this.counters.dispatches++;
  }

  /** A compute pass holding one dispatch, with timestamps around it (profiling mode). */
  private profiledPass(name: string): GPUComputePassEncoder {
    const p = this.profiling!;
    const slot = p.names.push(name) - 1;
    const timestampWrites = { querySet: p.querySet, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1 };
    return (this.pass = this.commandEncoder().beginComputePass({ timestampWrites }));
  }

  /**
   * Runs `record` with every dispatch timed by GPU timestamps (one pass per dispatch, so slower than normal)
   * and returns the time per kernel name (or per name and workgroup grid with `byGrid`), largest first. Null
   * when the adapter has no timestamp-query.
   */
  async profile(record: () => unknown, { byGrid = false } = {}): Promise<{ name: string; calls: number; ms: number }[] | null> {
    if (!this.gpu.hasFeature('timestamp-query')) return null;
    this.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * PROFILE_SLOTS });
    this.profiling = { querySet, names: [], byGrid };
    let names: string[];
    try {
      await record();
    } finally {
      names = this.profiling.names;
      this.profiling = null;
    }
    this.endPass();
    const resolved = this.device.createBuffer({ size: 16 * names.length, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.commandEncoder().resolveQuerySet(querySet, 0, 2 * names.length, resolved, 0);
    const stamps = new BigUint64Array(await this.read(resolved, 0, 16 * names.length));
    resolved.destroy();
    querySet.destroy();
    const totals = new Map<string, { name: string; calls: number; ms: number }>();
    names.forEach((name, i) => {
      const t = totals.get(name) ?? { name, calls: 0, ms: 0 };
      t.calls++;
      t.ms += Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
      totals.set(name, t);
    });
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }

  private commandEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private computePass(): GPUComputePassEncoder {
    if (this.pass) return this.pass;
    const timing = this.timing;
    if (timing) timing.passes++;
    const timestampWrites = timing && timing.passes === 1 ? { querySet: timing.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : undefined;
    return (this.pass = this.commandEncoder().beginComputePass(timestampWrites ? { timestampWrites } : {}));
  }

  /**
   * GPU time in milliseconds of the dispatches `record` makes, from timestamp queries around their compute
   * pass; null when the adapter has no timestamp-query or the work did not fit in one pass.
   */
  async timeGpu(record: () => void): Promise<number | null> {
    if (!this.gpu.hasFeature('timestamp-query')) {
      record();
      return null;
    }
    this.flush();
    this.querySet ??= this.device.createQuerySet({ type: 'timestamp', count: 2 });
    this.timing = { querySet: this.querySet, passes: 0 };
    let passes: number;
    try {
      record();
    } finally {
      passes = this.timing.passes;
      this.timing = null;
    }
    if (passes !== 1) return null;
    this.endPass();
    const resolved = this.device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.commandEncoder().resolveQuerySet(this.querySet, 0, 2, resolved, 0);
    const [begin, end] = new BigUint64Array(await this.read(resolved, 0, 16));
    resolved.destroy();
    return Number(end - begin) / 1e6;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.arenaUsed) this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, this.arenaUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
    this.pendingDispatches = 0;
    this.counters.submits++;
  }

  /** Writes host data into a buffer, after everything recorded so far (which may still read its old contents). */
  upload(buffer: GPUBuffer, byteOffset: number, data: ArrayBufferView): void {
    this.flush();
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copies `bytes` from a buffer back to the host. The only place the CPU waits for the GPU. */
  async read(buffer: GPUBuffer, byteOffset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ label: 'readback', size: size + 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copy(buffer, byteOffset, staging, 0, size);
    this.copy(this.errorFlag, 0, staging, size, 4);
    this.flush();
    this.counters.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      this.gpu.throwIfFailed();
      throw new GpuError(`readback failed: ${(e as Error).message}`);
    }
    this.gpu.throwIfFailed();
    const mapped = staging.getMappedRange();
    const out = mapped.slice(0, bytes);
    const code = new Uint32Array(mapped, size, 1)[0];
    staging.unmap();
    staging.destroy();
    if (code !== 0) {
      this.device.queue.writeBuffer(this.errorFlag, 0, new Uint32Array(1));
      throw new IndexError(this.errorCodes[code] ?? `a kernel reported error code ${code}`);
    }
    return out;
  }

  /** Waits until the GPU has finished all submitted work; rethrows any Dawn error. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.gpu.throwIfFailed();
  }

  /** Destroys every pooled (unused) buffer once the queue has drained. */
  async trim(): Promise<void> {
    const buffers = this.pool.drain();
    await this.sync();
    for (const b of buffers) b.destroy();
    this.bindGroups.clear();
  }

  stats(): EngineStats {
    return { ...this.pool.snapshot(), pipelinesCompiled: this.kernels.size, ...this.counters };
  }
}

let engine: Engine | null = null;

export function getEngine(): Engine {
  const g = gpu();
  if (!engine || engine.gpu !== g) engine = new Engine(g);
  return engine;
}

export function dropEngine(): void {
  engine = null;
}

/**
 * The WGSL opening of a kernel with one thread per item over a 1-D range that may span two grid dimensions
 * (see grid()): declares `main` and binds the item's position to `index`. The caller writes the bounds check.
 */
export function perItemEntry(workgroupSize: number, index = 't'): string {
  return `@compute @workgroup_size(${workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ${index} = gid.x + gid.y * nwg.x * ${workgroupSize}u;`;
}

/** Splits `count` workgroups over x and y so neither exceeds the per-dimension limit (kernels rebuild the index). */
export function grid(count: number, limit = 65535): [number, number] {
  if (count <= limit) return [count, 1];
  const y = Math.ceil(count / limit);
  return [Math.ceil(count / y), y];
}
