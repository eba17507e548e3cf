// Captured steps: record a step's GPU commands once, then replay them with nothing but encoder calls (CUDA
// graphs, tinygrad's TinyJit). A training step is thousands of dispatches, and in eager mode each one costs the
// JavaScript of the tensor bookkeeping, the tape, the pool, the bind-group lookup and the uniform packing; on a
// real GPU that host time, not the kernels, bounds the step. A replayed dispatch is three encoder calls.
//
//   const step = new CapturedStep((images, tokens) => trainStep(model, optimizer, images, tokens));
//   for (…) { optimizer.setLr(…); const loss = step.run(images, tokens); … }
//
// run() executes the function eagerly the first time (warm-up: pipelines compile, optimizer state appears), then
// records it twice while executing it; when both recordings agree — same kernels, grids, buffers (up to renaming
// of scratch buffers) and uniform bytes — later calls replay the second. Every replayed command is the one the
// eager step issued, so a replayed step equals an eager one bit for bit (tested).
//
// What a replay cannot follow, and what happens:
// - inputs: run(...inputs) copies each input into the tensor the recording read (one GPU copy); an input whose
//   shape or dtype differs invalidates the capture, which records again;
// - host values that change per step (the optimizer's learning rate and step count): a kernel gives such a
//   uniform as a function, re-evaluated at every replay; onReplay(hook) re-runs host bookkeeping (the optimizer's
//   step counter). Any other uniform that differs between the two recordings refuses the capture, naming it;
// - data-dependent control flow: a readback while recording (item(), data()) refuses the capture (CaptureError
//   from the read; the step stays eager), as does a step that returns a Promise;
// - replaced tensors: a buffer the recording used that was freed or handed to another tensor since (a parameter
//   set, optimizer state or output replaced) invalidates the capture, which records again; a tensor that existed
//   before the step and was disposed inside it refuses the capture (its buffer is not the step's scratch).
// A refused capture runs eagerly from then on; `refusal` says why. The scratch buffers of the recording stay
// reserved for it until dispose(), so memory is the eager step's peak, held.
import { CaptureError } from './errors.ts';
import { getEngine, type Recorded, type Recording, type ReplayCommand } from './engine.ts';
import type { DynamicUniform, Kernel } from './kernel.ts';
import { keep, Tensor } from './tensor.ts';

const UNIFORM_ALIGN = 256;

/** Host bookkeeping registered by the step being recorded, re-run before each replay. */
let hooks: (() => void)[] | null = null;

/**
 * Registers `hook` to run before every replay of the step being captured (no-op outside a capture). The
 * optimizer's step counter uses it: a replayed update must count too.
 */
export function onReplay(hook: () => void): void {
  hooks?.push(hook);
}

/** Whether a step is being recorded now. */
export const isCapturing = (): boolean => hooks !== null;

/** Tensors inside a step's result (arrays and plain objects are walked), in a stable order. */
function tensorsIn(value: unknown, out: Tensor[] = []): Tensor[] {
  if (value instanceof Tensor) out.push(value);
  else if (Array.isArray(value)) for (const v of value) tensorsIn(v, out);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) tensorsIn(v, out);
  }
  return out;
}

/** `value` with every tensor replaced by `map(tensor)`. */
function mapTensors<R>(value: R, map: (t: Tensor) => Tensor): R {
  if (value instanceof Tensor) return map(value) as R;
  if (Array.isArray(value)) return value.map((v) => mapTensors(v, map)) as R;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapTensors(v, map)])) as R;
  }
  return value;
}

/** A view sharing the tensor's storage (the storage lives while any view does). */
const shareOf = (t: Tensor) => keep(t.view(t.shape, t.strides));

/**
 * Where two recordings of a step first differ, or null when they agree. Scratch buffers may differ between the
 * recordings (the pool hands them out in another order), so buffers compare by first use.
 */
function difference(a: Recorded[], b: Recorded[]): string | null {
  if (a.length !== b.length) return `the two recordings have ${a.length} and ${b.length} commands (the step does different work each time)`;
  const ids = [new Map<GPUBuffer, number>(), new Map<GPUBuffer, number>()];
  const id = (side: number, buffer: GPUBuffer) => {
    const map = ids[side];
    let n = map.get(buffer);
    if (n === undefined) map.set(buffer, (n = map.size));
    return n;
  };
  const same = (x: GPUBuffer, y: GPUBuffer) => id(0, x) === id(1, y);
  for (let i = 0; i < a.length; i++) {
    const [p, q] = [a[i], b[i]];
    const where = `command ${i}${p.kind === 'dispatch' ? ` (${p.kernel.spec.name})` : ` (${p.kind})`}`;
    if (p.kind !== q.kind) return `${where}: a ${p.kind} the first time, a ${q.kind} the second`;
    if (p.kind === 'dispatch' && q.kind === 'dispatch') {
      if (p.kernel !== q.kernel) return `${where}: another kernel the second time (${q.kernel.spec.name})`;
      if (p.workgroups.join() !== q.workgroups.join()) return `${where}: grid ${p.workgroups} then ${q.workgroups} (a shape changed)`;
      if (!p.buffers.every((buffer, k) => same(buffer, q.buffers[k]))) return `${where}: bound to other tensors the second time`;
      // Field by field: the struct's padding holds whatever the arena held before.
      const dynamic = new Set(p.dynamic.map((d) => d.offset));
      const differs = p.kernel.fields.find((f) => {
        if (dynamic.has(f.offset)) return false;
        const end = f.offset + (f.type === 'vec8u' ? 32 : 4);
        for (let k = f.offset; k < end; k++) if (p.uniforms[k] !== q.uniforms[k]) return true;
        return false;
      });
      if (differs) return `${where}: uniform '${differs.name}' differs between the recordings (a host value that changes every step; give it as a function)`;
    } else if (p.kind === 'copy' && q.kind === 'copy') {
      if (!same(p.src, q.src) || !same(p.dst, q.dst) || p.srcOffset !== q.srcOffset || p.dstOffset !== q.dstOffset || p.bytes !== q.bytes) {
        return `${where}: copies other bytes the second time`;
      }
    } else if (p.kind === 'upload' && q.kind === 'upload') {
      if (!same(p.buffer, q.buffer) || p.offset !== q.offset || p.data.length !== q.data.length || p.data.some((v, k) => v !== q.data[k])) {
        return `${where}: uploads other host data the second time (pass per-step data as an input of run())`;
      }
    }
  }
  return null;
}

/**
 * Where a recording used the buffer of a tensor that existed before the step and was disposed during it (a
 * gradient zeroed by a step that did not compute it, say), or null. Such a buffer is free when the plan is
 * built, but it is not scratch: its contents came from outside the step, and a replay would read whatever the
 * pool put there since.
 */
function freedOutsider(recording: Recording): string | null {
  const pool = getEngine().pool;
  for (const [i, c] of recording.commands.entries()) {
    const buffers = c.kind === 'dispatch' ? c.buffers : c.kind === 'copy' ? [c.src, c.dst] : [c.buffer];
    if (buffers.some((b) => pool.isFree(b) && !pool.handedOutSince(b, recording.since))) {
      const what = c.kind === 'dispatch' ? c.kernel.spec.name : c.kind;
      return `command ${i} (${what}) used a tensor that existed before the step and was disposed during it (dispose it outside the captured function)`;
    }
  }
  return null;
}

/** A recording turned into replayable commands, and what it holds. */
interface Plan {
  commands: ReplayCommand[];
  /** The capture's own uniform buffer: the dispatches with dynamic fields first, then the rest. */
  uniformBuffer: GPUBuffer;
  /** Bytes at the start of uniformBuffer that are rewritten at each replay, and what writes them. */
  dynamicBytes: number;
  dynamic: { slot: number; fields: DynamicUniform[] }[];
  uniformCpu: ArrayBuffer;
  /** Scratch buffers taken out of the pool for this capture. */
  reserved: GPUBuffer[];
  /** Buffers owned elsewhere (parameters, optimizer state, inputs, outputs) and the hand-out they were on. */
  external: [GPUBuffer, number][];
  hooks: (() => void)[];
  inputs: Tensor[];
  /** The recorded run's result, its tensors shared by the capture. */
  result: unknown;
  /** Settles once `commands` use pipelines with fixed uniform slots (or that upgrade gave up). */
  fixed: Promise<void>;
  fixedSlots: boolean;
}

/** A step run eagerly, then recorded, then replayed: see the file comment. */
export class CapturedStep<I extends Tensor[], R> {
  /** Why this step runs eagerly for good (null while it may be captured). */
  refusal: string | null = null;
  private calls = 0;
  /** The first of the two recordings, with the input shapes it was made for. */
  private first: { recording: Recording; shapes: string } | null = null;
  private plan: Plan | null = null;
  /** Replays since the last recording. */
  replays = 0;

  constructor(
    private readonly step: (...inputs: I) => R,
    private readonly name = 'step',
  ) {}

  /** Runs the step on `inputs`: eagerly while warming up and recording, replayed afterwards. */
  run(...inputs: I): R {
    if (this.refusal) return this.step(...inputs);
    if (this.plan && !this.stillValid(inputs)) this.release();
    if (this.plan) return this.replay(inputs);
    this.calls++;
    if (this.calls === 1) return this.step(...inputs); // warm-up: pipelines, lazily made state
    return this.record(inputs);
  }

  /** Whether the next run() replays. */
  get ready(): boolean {
    return this.plan !== null;
  }

  /** Releases the reserved buffers and the recording; the step records again on its next runs. */
  dispose(): void {
    this.release();
    this.first = null;
    this.calls = 0;
  }

  private record(inputs: I): R {
    const engine = getEngine();
    engine.startRecording();
    const registered: (() => void)[] = [];
    hooks = registered;
    let result: R;
    let recording: Recording;
    try {
      result = this.step(...inputs);
    } finally {
      hooks = null;
      recording = engine.stopRecording();
    }
    if (result instanceof Promise) {
      this.refuse('it returns a Promise (it waits for the GPU); a replayed step must record without awaiting');
      return result;
    }
    if (recording.refusal) return this.refuse(recording.refusal), result;
    // Inputs of another shape (a last, smaller batch) start the recordings over rather than failing to agree.
    const shapes = inputs.map((t) => `${t.dtype}[${t.shape}]`).join(' ');
    if (!this.first || this.first.shapes !== shapes) {
      this.first = { recording, shapes };
      return result;
    }
    const diff = difference(this.first.recording.commands, recording.commands) ?? freedOutsider(recording);
    this.first = null;
    if (diff) return this.refuse(diff), result;
    this.plan = this.build(recording.commands, registered, inputs, result);
    return result;
  }

  private refuse(reason: string): void {
    this.refusal = `${this.name} runs eagerly: ${reason}`;
    this.release();
  }

  private build(commands: Recorded[], registered: (() => void)[], inputs: I, result: R): Plan {
    const engine = getEngine();
    const pool = engine.pool;
    // The inputs and outputs are shared by the capture, so their buffers outlive the caller's tensors.
    const heldInputs = inputs.map(shareOf);
    const held = mapTensors(result, shareOf);
    const reserved: GPUBuffer[] = [];
    const external: [GPUBuffer, number][] = [];
    const seen = new Map<GPUBuffer, number>();
    const note = (b: GPUBuffer) => {
      if (seen.has(b)) return;
      seen.set(b, seen.size);
      if (pool.isFree(b)) {
        pool.reserve(b);
        reserved.push(b);
      } else external.push([b, pool.generation(b)]);
    };
    for (const c of commands) {
      if (c.kind === 'dispatch') c.buffers.forEach(note);
      else if (c.kind === 'copy') [c.src, c.dst].forEach(note);
      else note(c.buffer);
    }
    // One uniform slot per dispatch: the ones with fields given as functions first, rewritten each replay.
    const dispatches = commands.filter((c): c is Extract<Recorded, { kind: 'dispatch' }> => c.kind === 'dispatch');
    const order = [...dispatches.filter((d) => d.dynamic.length), ...dispatches.filter((d) => !d.dynamic.length)];
    const slotOf = new Map(order.map((d, i) => [d, i]));
    const uniformCpu = new ArrayBuffer(Math.max(1, order.length) * UNIFORM_ALIGN);
    for (const d of order) new Uint8Array(uniformCpu, slotOf.get(d)! * UNIFORM_ALIGN, d.uniforms.length).set(d.uniforms);
    const uniformBuffer = engine.device.createBuffer({
      label: `captured ${this.name} uniforms`,
      size: uniformCpu.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    engine.device.queue.writeBuffer(uniformBuffer, 0, uniformCpu);
    const groups = new Map<string, GPUBindGroup>();
    const groupOf = (kernel: Kernel, buffers: GPUBuffer[]) => {
      const key = `${kernel.id}|${buffers.map((b) => seen.get(b)).join(',')}`;
      let group = groups.get(key);
      if (!group) {
        const entries: GPUBindGroupEntry[] = buffers.map((buffer, i) => ({ binding: i, resource: { buffer } }));
        entries.push({ binding: buffers.length, resource: { buffer: uniformBuffer, size: kernel.uniformBytes } });
        group = engine.device.createBindGroup({ label: kernel.spec.name, layout: kernel.layout, entries });
        groups.set(key, group);
      }
      return group;
    };
    const replayed: ReplayCommand[] = commands.map((c) => {
      if (c.kind !== 'dispatch') return c;
      const [x, y, z] = c.workgroups;
      return { kind: 'dispatch', pipeline: c.kernel.pipeline, group: groupOf(c.kernel, c.buffers), offset: slotOf.get(c)! * UNIFORM_ALIGN, x, y, z };
    });
    const dynamic = order.filter((d) => d.dynamic.length).map((d) => ({ slot: slotOf.get(d)!, fields: d.dynamic }));
    const plan: Plan = {
      commands: replayed,
      uniformBuffer,
      dynamicBytes: dynamic.length * UNIFORM_ALIGN,
      dynamic,
      uniformCpu,
      reserved,
      external,
      hooks: registered,
      inputs: heldInputs,
      result: held,
      fixed: Promise.resolve(),
      fixedSlots: false,
    };
    plan.fixed = this.fixUniforms(plan, commands);
    return plan;
  }

  /**
   * Replays start at once with the kernels' own pipelines (uniforms at a dynamic offset); meanwhile the same
   * shaders compile with each dispatch's uniform slot fixed in its bind group, and once they are in, replays use
   * those: one encoder argument fewer per dispatch, same arithmetic (core/kernel.ts fixedUniforms).
   */
  private async fixUniforms(plan: Plan, recorded: Recorded[]): Promise<void> {
    const kernels = new Set(recorded.flatMap((c) => (c.kind === 'dispatch' ? [c.kernel] : [])));
    let fixed: Map<Kernel, Awaited<ReturnType<Kernel['fixedUniforms']>>>;
    try {
      fixed = new Map(await Promise.all([...kernels].map(async (k) => [k, await k.fixedUniforms()] as const)));
    } catch {
      return; // the dynamic-offset pipelines keep serving (a failed compile is reported by the engine's error check)
    }
    if (this.plan !== plan) return; // released or recorded again meanwhile
    const device = getEngine().device;
    plan.commands = plan.commands.map((c, i) => {
      const r = recorded[i];
      if (c.kind !== 'dispatch' || r.kind !== 'dispatch' || c.offset === null) return c;
      const { pipeline, layout } = fixed.get(r.kernel)!;
      const entries: GPUBindGroupEntry[] = r.buffers.map((buffer, b) => ({ binding: b, resource: { buffer } }));
      entries.push({ binding: r.buffers.length, resource: { buffer: plan.uniformBuffer, offset: c.offset, size: r.kernel.uniformBytes } });
      return { ...c, pipeline, group: device.createBindGroup({ label: r.kernel.spec.name, layout, entries }), offset: null };
    });
    plan.fixedSlots = true;
  }

  /**
   * How replays bind their uniforms now: at 'dynamic offsets' first, then, once the fixed-slot pipelines are in,
   * through 'fixed slots'; null while the step is not captured.
   */
  get replayForm(): 'dynamic offsets' | 'fixed slots' | null {
    return this.plan ? (this.plan.fixedSlots ? 'fixed slots' : 'dynamic offsets') : null;
  }

  /** Resolves once replays of this step run in their cheapest form (fixed uniform slots); at once when not captured. */
  async settled(): Promise<void> {
    await this.plan?.fixed;
  }

  /** Whether the plan still describes the world: same input shapes, every outside buffer still its owner's. */
  private stillValid(inputs: I): boolean {
    const plan = this.plan!;
    if (inputs.length !== plan.inputs.length) return false;
    for (const [i, t] of inputs.entries()) {
      const held = plan.inputs[i];
      if (t.dtype !== held.dtype || t.shape.length !== held.shape.length || t.shape.some((d, k) => d !== held.shape[k])) return false;
    }
    const pool = getEngine().pool;
    return plan.external.every(([b, generation]) => !pool.isFree(b) && pool.generation(b) === generation);
  }

  private replay(inputs: I): R {
    const plan = this.plan!;
    const engine = getEngine();
    for (const [i, t] of inputs.entries()) {
      const held = plan.inputs[i];
      if (t.storage === held.storage && t.offset === held.offset) continue;
      const unit = t.dtype === 'f16' ? 2 : 4;
      if (!t.isContiguous || !held.isContiguous || (t.offset * unit) % 4 || (held.offset * unit) % 4) {
        throw new CaptureError(`${this.name}: input ${i} must be contiguous and word-aligned to be copied into the captured step`);
      }
      const bytes = Math.ceil((t.size * unit) / 4) * 4;
      if (bytes) engine.copy(t.bufferFor(this.name), t.offset * unit, held.bufferFor(this.name), held.offset * unit, bytes);
    }
    for (const hook of plan.hooks) hook();
    if (plan.dynamic.length) {
      const view = new DataView(plan.uniformCpu);
      for (const { slot, fields } of plan.dynamic) {
        for (const f of fields) {
          const at = slot * UNIFORM_ALIGN + f.offset;
          const v = f.value();
          if (f.type === 'f32') view.setFloat32(at, v, true);
          else if (f.type === 'i32') view.setInt32(at, v, true);
          else view.setUint32(at, v, true);
        }
      }
      // Flushes first: commands of the previous replay still unsubmitted read this buffer too.
      engine.upload(plan.uniformBuffer, 0, new Uint8Array(plan.uniformCpu, 0, plan.dynamicBytes));
    }
    engine.replay(plan.commands);
    this.replays++;
    return mapTensors(plan.result as R, (t) => t.view(t.shape, t.strides));
  }

  /** Gives the reserved buffers back and drops the plan (its uniform buffer once queued work is done). */
  private release(): void {
    const plan = this.plan;
    if (!plan) return;
    this.plan = null;
    this.calls = 0;
    this.replays = 0;
    const engine = getEngine();
    for (const b of plan.reserved) engine.pool.release(b);
    for (const t of [...plan.inputs, ...tensorsIn(plan.result)]) t.dispose();
    const buffer = plan.uniformBuffer;
    void engine.sync().then(() => buffer.destroy(), () => buffer.destroy());
  }
}
