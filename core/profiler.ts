// GPU timestamps for the engine's two timing modes:
//  - per dispatch (profile): every dispatch gets a compute pass of its own with timestamps around it, so the
//    time of each kernel is known (slower than normal running: one pass per dispatch);
//  - per pass (timeGpu): the one compute pass the timed work records gets timestamps at its ends.
// The engine asks this module for each new pass's timestampWrites and hands it the resolved stamps.

/** Dispatches timed by one profile() call (two timestamps each). */
const PROFILE_SLOTS = 2048;

export interface KernelTime {
  name: string;
  calls: number;
  ms: number;
}

export class Timestamps {
  private perDispatch: { querySet: GPUQuerySet; names: string[]; byGrid: boolean } | null = null;
  private perPass: { querySet: GPUQuerySet; passes: number } | null = null;
  private passQuerySet: GPUQuerySet | null = null;

  constructor(private readonly device: GPUDevice) {}

  /** Starts per-dispatch timing. */
  startDispatches(byGrid: boolean): void {
    this.perDispatch = { querySet: this.device.createQuerySet({ type: 'timestamp', count: 2 * PROFILE_SLOTS }), names: [], byGrid };
  }

  /**
   * While per-dispatch timing runs (and slots remain): the timestampWrites of the pass that must hold only
   * this dispatch. Null otherwise.
   */
  dispatchWrites(kernelName: string, [x, y, z]: readonly number[]): GPUComputePassTimestampWrites | null {
    const p = this.perDispatch;
    if (!p || p.names.length >= PROFILE_SLOTS) return null;
    const slot = p.names.push(p.byGrid ? `${kernelName} [${x},${y},${z}]` : kernelName) - 1;
    return { querySet: p.querySet, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1 };
  }

  /** Stops per-dispatch timing; `resolve` turns the query set's first `count` stamps into a BigUint64Array. */
  async stopDispatches(resolve: (querySet: GPUQuerySet, count: number) => Promise<BigUint64Array>): Promise<KernelTime[]> {
    const p = this.perDispatch!;
    this.perDispatch = null;
    const stamps = await resolve(p.querySet, 2 * p.names.length);
    p.querySet.destroy();
    const totals = new Map<string, KernelTime>();
    p.names.forEach((name, i) => {
      const t = totals.get(name) ?? { name, calls: 0, ms: 0 };
      t.calls++;
      t.ms += Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
      totals.set(name, t);
    });
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Starts per-pass timing. */
  startPass(): void {
    this.passQuerySet ??= this.device.createQuerySet({ type: 'timestamp', count: 2 });
    this.perPass = { querySet: this.passQuerySet, passes: 0 };
  }

  /** The timestampWrites of a new ordinary pass: stamps for the first pass opened while per-pass timing runs. */
  passWrites(): GPUComputePassTimestampWrites | null {
    const t = this.perPass;
    if (!t) return null;
    return ++t.passes === 1 ? { querySet: t.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } : null;
  }

  /** Stops per-pass timing: milliseconds, or null when the work did not fit in exactly one pass. */
  async stopPass(resolve: (querySet: GPUQuerySet, count: number) => Promise<BigUint64Array>): Promise<number | null> {
    const t = this.perPass!;
    this.perPass = null;
    if (t.passes !== 1) return null;
    const [begin, end] = await resolve(t.querySet, 2);
    return Number(end - begin) / 1e6;
  }

  /** Abandons timing after the timed code threw. */
  cancel(): void {
    this.perDispatch?.querySet.destroy();
    this.perDispatch = null;
    this.perPass = null;
  }
}
