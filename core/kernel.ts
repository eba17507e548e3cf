// The kernel compiler: a typed spec (outputs, inputs, uniforms, WGSL body) becomes a compute pipeline whose
// bindings and uniform struct are generated from the spec, so WGSL and JS cannot disagree on them.
import { GpuError } from './errors.ts';

/** Element type of a storage binding; vec4 lets a kernel load four values at once; f16 needs 'enable f16;'. */
export type StorageType = 'f32' | 'i32' | 'u32' | 'vec4<f32>' | 'f16' | 'vec4<f16>';
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
  /**
   * Directives placed before all declarations, e.g. 'enable subgroups;' (the device must have the feature).
   * 'enable f16;' is added by the compiler whenever a binding is f16.
   */
  directives?: string[];
}

/** The buffers of a dispatch, one per binding of the spec (an optional binding of the spec is optional here). */
export type BufferArgs<S extends KernelSpec> = { [K in keyof S['outputs']]: GPUBuffer } & { [K in keyof S['inputs']]: GPUBuffer };
/**
 * A uniform's value: a number, eight numbers for a vec8u, or a function of the host's state read when the dispatch
 * is recorded — and again at every replay of a captured step (core/capture.ts), so a captured optimizer update
 * follows its learning rate and step count.
 */
export type UniformValue = number | readonly number[] | (() => number);
export type UniformArgs<S extends KernelSpec> = { [K in keyof S['uniforms']]: UniformValue };

/** A scalar uniform given as a function: where it lies in the struct, and how to write it again. */
export interface DynamicUniform {
  offset: number;
  type: 'u32' | 'i32' | 'f32';
  value: () => number;
}

export const MAX_RANK = 8;

interface Field {
  name: string;
  type: UniformType;
  offset: number; // bytes
}

let nextKernelId = 1;

/**
 * A compiled kernel: its pipeline, bind group layout and uniform layout.
 *
 * Every storage binding `x` is declared through an alias of its element type, `alias x_t = f16;` then
 * `var<storage> x: array<x_t>`, so one source serves f32 and f16 storage: a kernel reads `f32(x[i])` (or
 * `vec4<f32>(x[i])`), computes in f32, and stores `y[i] = y_t(value)`. For f32 buffers those conversions are the
 * identity; for f16 ones they are the single widening and the single rounding. The shader that runs is the
 * spec's WGSL below these generated declarations (`source`; CLIPGPU_DUMP_WGSL writes it to a file).
 */
export class Kernel<S extends KernelSpec = KernelSpec> {
  /** Unique per compiled kernel: bind groups are cached by it and the buffers' identities. */
  readonly id = nextKernelId++;
  readonly fields: Field[];
  readonly uniformBytes: number;
  readonly bindingNames: string[];
  /** Set by the constructor, or by compileAsync() for a kernel constructed with `later`. */
  pipeline!: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  private readonly layoutEntries: GPUBindGroupLayoutEntry[];
  readonly source: string;

  /** `later`: leave the pipeline to compileAsync() (many kernels compile in parallel that way: Engine.precompile). */
  constructor(
    private readonly device: GPUDevice,
    readonly spec: S,
    compile: 'now' | 'later' = 'now',
  ) {
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
    // What the device allows decides, not what one adapter happened to allow: refuse clearly, never a WGSL error.
    const limit = device.limits.maxStorageBuffersPerShaderStage;
    if (this.bindingNames.length > limit) {
      throw new GpuError(`${spec.name}: binds ${this.bindingNames.length} storage buffers; this device allows ${limit} per shader stage`);
    }
    const storage = { ...spec.outputs, ...spec.inputs };
    const half = Object.values(storage).some((t) => t === 'f16' || t === 'vec4<f16>');
    const directives = [...(half ? ['enable f16;'] : []), ...(spec.directives ?? []).filter((d) => d !== 'enable f16;')];
    const wanted = directives.flatMap((d) => /^enable (\w+);/.exec(d)?.[1] ?? []);
    for (const feature of wanted) {
      if (!device.features.has(feature === 'f16' ? 'shader-f16' : feature)) {
        throw new GpuError(
          `${spec.name}: needs the WebGPU feature '${feature === 'f16' ? 'shader-f16' : feature}', which this device lacks`,
        );
      }
    }

    const decl: string[] = [...directives];
    let binding = 0;
    for (const [name, type] of Object.entries(storage)) {
      const access = name in spec.outputs ? 'read_write' : 'read';
      decl.push(`alias ${name}_t = ${type};`, `@group(0) @binding(${binding++}) var<storage, ${access}> ${name}: array<${name}_t>;`);
    }
    const members = this.fields.map((f) => `  ${f.name}: ${f.type === 'vec8u' ? 'array<vec4<u32>, 2>' : f.type},`);
    if (members.length === 0) members.push('  _unused: u32,');
    decl.push(`struct Uniforms {\n${members.join('\n')}\n}`, `@group(0) @binding(${binding}) var<uniform> u: Uniforms;`);
    decl.push('fn at8(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }');
    this.source = `${decl.join('\n')}\n${spec.wgsl}`;

    this.layoutEntries = this.bindingNames.map((name, i) => ({
      binding: i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: name in spec.outputs ? 'storage' : 'read-only-storage' },
    }));
    this.layoutEntries.push({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
    this.layout = device.createBindGroupLayout({ label: spec.name, entries: this.layoutEntries });
    if (compile === 'now') this.pipeline = device.createComputePipeline(this.pipelineDescriptor());
  }

  private pipelineDescriptor(layout = this.layout): GPUComputePipelineDescriptor {
    const { device, spec } = this;
    this.module ??= device.createShaderModule({ label: spec.name, code: this.source });
    return {
      label: spec.name,
      layout: device.createPipelineLayout({ label: spec.name, bindGroupLayouts: [layout] }),
      compute: { module: this.module, entryPoint: 'main' },
    };
  }

  private module: GPUShaderModule | null = null;
  private fixed: Promise<{ pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }> | null = null;

  /**
   * The same shader with its uniforms bound at a fixed offset (no dynamic offset), for captured steps
   * (core/capture.ts): each replayed dispatch has its own uniform slot, so its bind group can name the slot, and
   * setBindGroup without dynamic offsets is the cheapest encoder call there is (in Dawn about 2 µs less per
   * dispatch, and lavapipe runs such dispatches faster). Compiled once, off the calling thread where possible.
   */
  fixedUniforms(): Promise<{ pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }> {
    return (this.fixed ??= (async () => {
      const entries = this.layoutEntries.map((e) => (e.buffer?.hasDynamicOffset ? { ...e, buffer: { type: 'uniform' as const } } : e));
      const layout = this.device.createBindGroupLayout({ label: `${this.spec.name} (fixed uniforms)`, entries });
      const pipeline = await this.device.createComputePipelineAsync(this.pipelineDescriptor(layout));
      return { pipeline, layout };
    })());
  }

  /** Compiles the pipeline off the calling thread where the implementation can (createComputePipelineAsync). */
  async compileAsync(): Promise<this> {
    this.pipeline ??= await this.device.createComputePipelineAsync(this.pipelineDescriptor());
    return this;
  }

  /**
   * Writes the uniform struct at `base`; fields given as functions are evaluated now and, when `dynamic` is
   * passed, listed there (offsets from the struct's start) so a replay can write them again.
   */
  writeUniforms(view: DataView, base: number, values: Record<string, UniformValue>, dynamic?: DynamicUniform[]): void {
    for (const f of this.fields) {
      let v = values[f.name];
      if (v === undefined) throw new GpuError(`${this.spec.name}: uniform '${f.name}' was not given`);
      if (typeof v === 'function') {
        if (f.type === 'vec8u') throw new GpuError(`${this.spec.name}: uniform '${f.name}' (vec8u) cannot be a function`);
        dynamic?.push({ offset: f.offset, type: f.type, value: v });
        v = v();
      }
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
