// The WebGPU device, from the host at hand: a browser's `navigator.gpu`, or in Node the `webgpu` package
// (Dawn's bindings), imported only there. This is the only module that touches either.
//
// Two facts about Dawn shape this file:
//  - The object returned by create() must stay strongly referenced while any adapter or device from it lives;
//    if it is garbage-collected, Dawn's event processing touches freed memory and the process crashes at
//    random. `Gpu.instance` holds it for the device's whole life.
//  - Validation errors are printed and otherwise ignored. We collect them through `uncapturederror` and
//    rethrow them from the next synchronisation point (readback, sync()) as GpuError.
// The WebGPU types (GPUDevice, GPUBuffer, …) that these declarations and the package's use; a dependency.
/// <reference types="@webgpu/types" preserve="true" />
import { GpuError } from './errors.ts';

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

export class Gpu {
  /** Errors reported by Dawn since the last check. */
  private errors: string[] = [];
  private lostReason: string | null = null;

  constructor(
    /** Held only to keep Dawn's instance alive (in a browser, navigator.gpu); see the file comment. */
    readonly instance: GPU,
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
  ) {
    device.addEventListener('uncapturederror', (event) => {
      event.preventDefault(); // we rethrow it; Dawn need not print it too
      this.errors.push((event as GPUUncapturedErrorEvent).error.message);
    });
    device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  get summary(): AdapterSummary {
    const info = this.adapter.info;
    return {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      features: [...this.adapter.features].sort(),
      maxStorageBufferBindingSize: this.device.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupsPerDimension: this.device.limits.maxComputeWorkgroupsPerDimension,
    };
  }

  /** A one-line adapter name for logs and benchmark records. */
  get name(): string {
    const s = this.summary;
    return [s.vendor, s.architecture, s.device, s.description].filter(Boolean).join(' / ') || 'unknown adapter';
  }

  /** The subgroup width when the device has subgroups of one fixed width (8 on lavapipe), else null. */
  get subgroupSize(): number | null {
    // Asked at every matmul and row-kernel launch; adapter.info is a fresh native object each time, so read once.
    if (this.subgroups === undefined) {
      const info = this.adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
      const fixed = this.device.features.has('subgroups') && info.subgroupMinSize && info.subgroupMinSize === info.subgroupMaxSize;
      this.subgroups = fixed ? info.subgroupMinSize! : null;
    }
    return this.subgroups;
  }

  private subgroups: number | null | undefined;

  hasFeature(name: GPUFeatureName): boolean {
    return this.device.features.has(name);
  }

  /** Throws the first pending Dawn error (or device loss) as a GpuError. */
  throwIfFailed(): void {
    if (this.lostReason) throw new GpuError(`WebGPU device lost (${this.lostReason})`);
    if (this.errors.length) {
      const [first, ...rest] = this.errors;
      this.errors = [];
      throw new GpuError(`WebGPU validation error: ${first}${rest.length ? ` (+${rest.length} more)` : ''}`);
    }
  }
}

let current: Gpu | null = null;
let opening: Promise<Gpu> | null = null;

const NO_ADAPTER_HELP =
  'No WebGPU adapter found. On Debian 12 install Mesa lavapipe from bookworm-backports ' +
  '(`npm run setup`, or: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1) ' +
  'and make sure XDG_RUNTIME_DIR is set.';
const NO_BROWSER_WEBGPU =
  'This browser exposes no WebGPU (navigator.gpu is missing or gave no adapter): use Chrome or Edge 113+, ' +
  'Safari 26+ or Firefox 141+ (Chromium on Linux: --enable-unsafe-webgpu), in a secure context (https or localhost).';

/** The WebGPU entry point: the page's own in a browser; in Node a Dawn instance (and WebGPU's globals). */
async function webgpuEntry(): Promise<{ instance: GPU; browser: boolean }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
  if (!isNode) {
    if (!nav?.gpu) throw new GpuError(NO_BROWSER_WEBGPU);
    return { instance: nav.gpu, browser: true };
  }
  const env = (globalThis as unknown as { process: { env: Record<string, string | undefined> } }).process.env;
  env.XDG_RUNTIME_DIR ??= '/tmp';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals); // GPUBufferUsage, GPUMapMode, … as in a browser
  return { instance: create((env.DAWN_FLAGS ?? '').split(',').filter(Boolean)), browser: false };
}

async function open(): Promise<Gpu> {
  const { instance, browser } = await webgpuEntry();
  const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new GpuError(browser ? NO_BROWSER_WEBGPU : NO_ADAPTER_HELP);
  const wanted: GPUFeatureName[] = ['shader-f16', 'timestamp-query', 'subgroups'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(10, adapter.limits.maxStorageBuffersPerShaderStage),
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
    },
  });
  return new Gpu(instance, adapter, device);
}

/** Opens the device once; later calls return the same one. */
export async function initGpu(): Promise<Gpu> {
  if (current) return current;
  opening ??= open().then((g) => (current = g)).finally(() => (opening = null));
  return opening;
}

/** The open device; ops are synchronous, so the device must have been opened with `await initGpu()`. */
export function gpu(): Gpu {
  if (!current) throw new GpuError('WebGPU is not initialised: call `await init()` before creating tensors');
  return current;
}

/** Destroys the device so Node can exit; the next initGpu() opens a fresh one. */
export function closeGpu(): void {
  current?.device.destroy();
  current = null;
}
