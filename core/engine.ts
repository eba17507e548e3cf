// The execution engine: caches compiled kernels (core/kernel.ts), records dispatches into one command encoder
// and submits them in batches, and reads buffers back only when asked. GPU timing lives in core/profiler.ts.
//
// Per-dispatch uniforms (shapes, strides, scalars) are appended to a CPU-side arena and bound with a dynamic
// offset, so a pipeline serves every shape and one bind group serves every dispatch over the same buffers.
// The arena is uploaded with a single writeBuffer right before its batch is submitted.
import { CaptureError, GpuError, IndexError } from './errors.ts';
import { gpu, type Gpu } from './device.ts';
import { Kernel, type BufferArgs, type DynamicUniform, type KernelSpec, type UniformArgs, type UniformValue } from './kernel.ts';
import { BufferPool, type MemoryStats } from './pool.ts';
import { Timestamps, type KernelTime } from './profiler.ts';
import { shaderDump } from './dump.ts';

const UNIFORM_ALIGN = 256; // minUniformBufferOffsetAlignment on every adapter we know
const ARENA_BYTES = 1 << 18;
const MAX_DISPATCHES_PER_BATCH = 128;

/** A command as a capture records it (core/capture.ts): everything needed to issue it again. */
export type Recorded =
  | {
      kind: 'dispatch';
      kernel: Kernel;
      buffers: GPUBuffer[];
      /** The uniform struct's bytes as written. */
      uniforms: Uint8Array;
      /** The fields given as functions, to write again at each replay. */
      dynamic: DynamicUniform[];
      workgroups: [number, number, number];
    }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { kind: 'upload'; buffer: GPUBuffer; offset: number; data: Uint8Array };

/**
 * A command of a captured step ready to issue: a dispatch is three encoder calls, nothing else. `offset` is the
 * uniforms' dynamic offset, or null for a bind group that names its uniform slot itself (Kernel.fixedUniforms).
 */
export type ReplayCommand =
  | { kind: 'dispatch'; pipeline: GPUComputePipeline; group: GPUBindGroup; offset: number | null; x: number; y: number; z: number }
  | Exclude<Recorded, { kind: 'dispatch' }>;

/** What the engine is recording into, and the first reason the recording cannot be replayed. */
export interface Recording {
  commands: Recorded[];
  refusal: string | null;
  /** The pool's hand-out mark when recording began (BufferPool.handedOutSince). */
  since: number;
}

/** Memory statistics plus pipeline, dispatch, submit and readback counts since the engine started. */
export interface EngineStats extends MemoryStats {
  pipelinesCompiled: number;
  dispatches: number;
  submits: number;
  readbacks: number;
  /** Milliseconds the host has spent waiting for the GPU (readbacks and sync()). */
  waitMs: number;
  /** Milliseconds spent in queue.submit (and the uniform upload before it): the driver's share, not JavaScript's. */
  submitMs: number;
  /** Bind groups created (a dispatch over the same kernel and buffers as an earlier one reuses its group). */
  bindGroups: number;
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
  private counters = { dispatches: 0, submits: 0, readbacks: 0, waitMs: 0, submitMs: 0, bindGroups: 0 };
  private recording: Recording | null = null;
  /** While precompile() plans: the kernels asked for and not compiled yet (nothing is dispatched). */
  private planning: Map<string, () => KernelSpec> | null = null;
  /** Set when a planned piece of work asked to read GPU data back (it cannot be planned). */
  private plannedRead = false;
  private readonly timestamps: Timestamps;
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
    this.timestamps = new Timestamps(this.device);
    this.errorFlag = this.device.createBuffer({
      label: 'error flag',
      size: 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
  }

  /** The code a kernel writes to errorFlag to report `message`. */
  errorCode(message: string): number {
    const at = this.errorCodes.indexOf(message);
    return at > 0 ? at : this.errorCodes.push(message) - 1;
  }

  /**
   * The kernel for `key`, compiled on first use; `make` builds its spec. The key names everything the source
   * depends on (variant, tile, dtypes, widths); with CLIPGPU_DUMP_WGSL set, the compiled shader is written out.
   */
  kernel<S extends KernelSpec>(key: string, make: () => S): Kernel<S> {
    let k = this.kernels.get(key);
    if (!k && this.planning) {
      this.planning.set(key, make);
      return PLANNED as Kernel<S>;
    }
    if (!k) {
      k = new Kernel(this.device, make());
      this.kernels.set(key, k);
      this.dumpShader?.(k, key);
    }
    return k as unknown as Kernel<S>;
  }

  private readonly dumpShader = shaderDump(() => this.gpu.name);

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  private bindGroup(kernel: Kernel, buffers: GPUBuffer[]): GPUBindGroup {
    const key = `${kernel.id}|${buffers.map((b) => this.bufferId(b)).join(',')}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const limit = this.device.limits.maxStorageBufferBindingSize;
      buffers.forEach((b, i) => {
        if (b.size > limit) {
          throw new GpuError(
            `${kernel.spec.name}: '${kernel.bindingNames[i]}' is a ${b.size}-byte buffer, ` +
              `over the device's ${limit}-byte storage binding limit; process the data in smaller batches`,
          );
        }
      });
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: i, resource: { buffer } }));
      entries.push({ binding: buffers.length, resource: { buffer: this.arena, size: kernel.uniformBytes } });
      group = this.device.createBindGroup({ label: kernel.spec.name, layout: kernel.layout, entries });
      this.bindGroups.set(key, group);
      this.counters.bindGroups++;
    }
    return group;
  }

  /** Records one dispatch. Nothing runs until the batch is flushed. */
  dispatch<S extends KernelSpec>(kernel: Kernel<S>, buffers: BufferArgs<S>, uniforms: UniformArgs<S>, workgroups: readonly [number, number?, number?]): void {
    if (this.planning) return;
    const [x, y = 1, z = 1] = workgroups;
    if (x > this.maxWorkgroups || y > this.maxWorkgroups || z > this.maxWorkgroups) {
      throw new GpuError(`${kernel.spec.name}: dispatch of [${x}, ${y}, ${z}] workgroups exceeds the device limit of ${this.maxWorkgroups} per dimension`);
    }
    if (x * y * z === 0) return;
    this.gpu.throwIfFailed();
    if (this.arenaUsed + kernel.uniformBytes > ARENA_BYTES || this.pendingDispatches >= MAX_DISPATCHES_PER_BATCH) this.flush();
    const list = kernel.bindingNames.map((n) => {
      const buffer = (buffers as Record<string, GPUBuffer | undefined>)[n];
      if (!buffer) throw new GpuError(`${kernel.spec.name}: no buffer given for binding '${n}'`);
      return buffer;
    });
    const offset = this.arenaUsed;
    const dynamic: DynamicUniform[] | undefined = this.recording ? [] : undefined;
    kernel.writeUniforms(this.arenaView, offset, uniforms as Record<string, UniformValue>, dynamic);
    this.arenaUsed = Math.ceil((offset + kernel.uniformBytes) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    this.recording?.commands.push({
      kind: 'dispatch',
      kernel,
      buffers: list,
      uniforms: new Uint8Array(this.arenaCpu.slice(offset, offset + kernel.uniformBytes)),
      dynamic: dynamic!,
      workgroups: [x, y, z],
    });
    const ownPass = this.timestamps.dispatchWrites(kernel.spec.name, [x, y, z]);
    if (ownPass) this.endPass();
    const pass = ownPass ? (this.pass = this.commandEncoder().beginComputePass({ timestampWrites: ownPass })) : this.computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup(kernel, list), [offset]);
    pass.dispatchWorkgroups(x, y, z);
    if (ownPass) this.endPass();
    this.pendingDispatches++;
    this.counters.dispatches++;
  }

  /**
   * Runs `record` with every dispatch timed by GPU timestamps (one pass per dispatch, so slower than normal)
   * and returns the time per kernel name (or per name and workgroup grid with `byGrid`), largest first. Null
   * when the adapter has no timestamp-query.
   */
  async profile(record: () => unknown, { byGrid = false } = {}): Promise<KernelTime[] | null> {
    if (!this.gpu.hasFeature('timestamp-query')) return null;
    this.flush();
    this.timestamps.startDispatches(byGrid);
    try {
      await record();
    } catch (e) {
      this.timestamps.cancel();
      throw e;
    }
    return this.timestamps.stopDispatches(this.resolveStamps);
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
    this.timestamps.startPass();
    try {
      record();
    } catch (e) {
      this.timestamps.cancel();
      throw e;
    }
    return this.timestamps.stopPass(this.resolveStamps);
  }

  /** Reads the first `count` timestamps of a query set back (after the work recorded so far). */
  private resolveStamps = async (querySet: GPUQuerySet, count: number): Promise<BigUint64Array> => {
    this.endPass();
    const resolved = this.device.createBuffer({ size: 8 * Math.max(count, 2), usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    if (count) this.commandEncoder().resolveQuerySet(querySet, 0, count, resolved, 0);
    const stamps = new BigUint64Array(await this.read(resolved, 0, 8 * count));
    resolved.destroy();
    return stamps;
  };

  private commandEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private computePass(): GPUComputePassEncoder {
    if (this.pass) return this.pass;
    const timestampWrites = this.timestamps.passWrites();
    return (this.pass = this.commandEncoder().beginComputePass(timestampWrites ? { timestampWrites } : {}));
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (this.planning) return;
    this.recording?.commands.push({ kind: 'copy', src, srcOffset, dst, dstOffset, bytes });
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const from = performance.now();
    if (this.arenaUsed) this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, this.arenaUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.counters.submitMs += performance.now() - from;
    this.encoder = null;
    this.arenaUsed = 0;
    this.pendingDispatches = 0;
    this.counters.submits++;
  }

  /** Writes host data into a buffer, after everything recorded so far (which may still read its old contents). */
  upload(buffer: GPUBuffer, byteOffset: number, data: ArrayBufferView): void {
    if (this.recording) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      this.recording.commands.push({ kind: 'upload', buffer, offset: byteOffset, data: bytes });
    }
    this.flush();
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Copies `bytes` from a buffer back to the host. The only place the CPU waits for the GPU. */
  async read(buffer: GPUBuffer, byteOffset: number, bytes: number): Promise<ArrayBuffer> {
    if (this.planning) {
      this.plannedRead = true;
      throw new GpuError(PLANNED_READ);
    }
    if (this.recording) {
      const why = 'it read GPU data back while being captured (a step that waits for or branches on GPU values cannot be replayed)';
      this.recording.refusal ??= why;
      throw new CaptureError(`captured step: ${why}`);
    }
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ label: 'readback', size: size + 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copy(buffer, byteOffset, staging, 0, size);
    this.copy(this.errorFlag, 0, staging, size, 4);
    this.flush();
    this.counters.readbacks++;
    const waitFrom = performance.now();
    try {
      await staging.mapAsync(GPUMapMode.READ);
      this.counters.waitMs += performance.now() - waitFrom;
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
    const waitFrom = performance.now();
    await this.device.queue.onSubmittedWorkDone();
    this.counters.waitMs += performance.now() - waitFrom;
    this.gpu.throwIfFailed();
  }

  /** Destroys every pooled (unused) buffer once the queue has drained. */
  async trim(): Promise<void> {
    const buffers = this.pool.drain();
    await this.sync();
    for (const b of buffers) b.destroy();
    this.bindGroups.clear();
  }

  /**
   * Compiles, in parallel (createComputePipelineAsync), every kernel `plan` would use that is not compiled yet,
   * and returns how many. `plan` runs with nothing dispatched, copied or read (host data is still uploaded, so a
   * mask it caches is right): the tensors kernels would compute hold garbage and must be thrown away, and it must
   * change no host state that matters (run a forward and backward, not an optimizer step). The first step then
   * finds its pipelines ready instead of compiling them one by one.
   */
  async precompile(plan: () => void): Promise<number> {
    this.flush();
    const wanted = new Map<string, () => KernelSpec>();
    this.planning = wanted;
    this.plannedRead = false;
    try {
      plan();
    } finally {
      this.planning = null;
    }
    if (this.plannedRead) throw new GpuError(PLANNED_READ);
    const fresh = [...wanted].filter(([key]) => !this.kernels.has(key)).map(([key, make]) => [key, new Kernel(this.device, make(), 'later')] as const);
    await Promise.all(fresh.map(([, k]) => k.compileAsync()));
    this.gpu.throwIfFailed();
    for (const [key, k] of fresh) {
      if (this.kernels.has(key)) continue;
      this.kernels.set(key, k);
      this.dumpShader?.(k, key);
    }
    return fresh.length;
  }

  /**
   * Starts recording every dispatch, copy and upload (core/capture.ts) while still running them; readbacks are
   * refused. stopRecording() returns what was recorded.
   */
  startRecording(): void {
    if (this.recording) throw new CaptureError('a step is already being captured (captures do not nest)');
    this.flush();
    this.recording = { commands: [], refusal: null, since: this.pool.mark() };
  }

  stopRecording(): Recording {
    const recording = this.recording;
    if (!recording) throw new CaptureError('no step is being captured');
    this.recording = null;
    return recording;
  }

  /**
   * Issues a captured step's commands: per dispatch the pipeline (when it changes), the bind group (with its
   * uniform offset, unless the group names its slot), and the grid — nothing else, and no submit: the step goes
   * to the GPU as one command buffer at the next flush.
   */
  replay(commands: readonly ReplayCommand[]): void {
    this.gpu.throwIfFailed();
    const offset = new Uint32Array(1);
    let pass: GPUComputePassEncoder | null = null;
    let pipeline: GPUComputePipeline | null = null;
    for (const c of commands) {
      if (c.kind === 'dispatch') {
        // No submit partway through a step, as eager dispatching does every MAX_DISPATCHES_PER_BATCH (there, to
        // bound the uniform arena and start the GPU early): a replay's uniforms are its own, and encoding a
        // whole step takes a millisecond or two. On a CPU adapter a submit partway would also start kernels on
        // the cores the encoding runs on: a ViT-scenes step's replay took ~20 ms of JavaScript that way, 2 ms
        // without.
        if (pass !== this.pass || !pass) {
          pass = this.computePass();
          pipeline = null;
        }
        if (c.pipeline !== pipeline) pass.setPipeline((pipeline = c.pipeline));
        if (c.offset === null) pass.setBindGroup(0, c.group);
        else {
          offset[0] = c.offset;
          pass.setBindGroup(0, c.group, offset, 0, 1);
        }
        pass.dispatchWorkgroups(c.x, c.y, c.z);
        this.pendingDispatches++;
        this.counters.dispatches++;
      } else if (c.kind === 'copy') this.copy(c.src, c.srcOffset, c.dst, c.dstOffset, c.bytes);
      else this.upload(c.buffer, c.offset, c.data);
    }
  }

  stats(): EngineStats {
    return { ...this.pool.snapshot(), pipelinesCompiled: this.kernels.size, ...this.counters };
  }

  /** memory().peakBytes restarts from the bytes live now. */
  resetPeak(): void {
    this.pool.resetPeak();
  }
}

const PLANNED_READ = 'precompile: the planned work read GPU data back (plan a forward and backward that do not)';
/** What kernel() hands out while precompile() plans: never dispatched (dispatch returns first). */
const PLANNED = Object.freeze({}) as Kernel;

let engine: Engine | null = null;

export function getEngine(): Engine {
  const g = gpu();
  if (!engine || engine.gpu !== g) engine = new Engine(g);
  return engine;
}

