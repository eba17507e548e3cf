// GPU buffer pool. Buffers are bucketed by size (powers of two split in quarters, so at most 25% slack) and
// reused; released buffers go back to their bucket. Reusing a buffer for new work is safe without waiting:
// WebGPU executes one queue in order, so the new writes land after every earlier read.
// Destroying is different: trim() first waits for the queue to drain.

const MIN_BUCKET = 256;

export function bucketBytes(bytes: number): number {
  if (bytes <= MIN_BUCKET) return MIN_BUCKET;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const quarter = pow / 4;
  return Math.ceil(bytes / quarter) * quarter;
}

export interface MemoryStats {
  /** Bytes held by live tensors (rounded up to their buckets). */
  liveBytes: number;
  liveBuffers: number;
  /** Bytes sitting in the pool, ready for reuse. */
  pooledBytes: number;
  /** Highest liveBytes seen. */
  peakBytes: number;
  /** GPU buffers created (pool misses). */
  allocations: number;
  /** Buffer requests served from the pool. */
  reuses: number;
}

export class BufferPool {
  /** Per bucket size, the free buffers in descending order of creation: pop() hands out the oldest. */
  private free = new Map<number, GPUBuffer[]>();
  private freeSet = new Set<GPUBuffer>();
  /** Creation order of each buffer the pool made. */
  private serial = new WeakMap<GPUBuffer, number>();
  private created = 0;
  /** How many times each buffer was handed out: a buffer freed and handed out again is another tensor's. */
  private handedOut = new WeakMap<GPUBuffer, number>();
  /** Hand-outs so far, all buffers together, and the count at each buffer's latest one. */
  private handouts = 0;
  private lastHandout = new WeakMap<GPUBuffer, number>();
  private stats: MemoryStats = { liveBytes: 0, liveBuffers: 0, pooledBytes: 0, peakBytes: 0, allocations: 0, reuses: 0 };

  constructor(private device: GPUDevice, private usage: GPUBufferUsageFlags) {}

  acquire(bytes: number, label?: string): GPUBuffer {
    const size = bucketBytes(bytes);
    const list = this.free.get(size);
    let buffer = list?.pop();
    if (buffer) {
      this.freeSet.delete(buffer);
      this.stats.reuses++;
      this.stats.pooledBytes -= size;
    } else {
      const maxBytes = this.device.limits.maxBufferSize;
      if (size > maxBytes) throw new RangeError(`cannot allocate ${bytes} bytes${label ? ` for ${label}` : ''}: the device's maxBufferSize is ${maxBytes}`);
      buffer = this.device.createBuffer({ size, usage: this.usage, label });
      this.serial.set(buffer, this.created++);
      this.stats.allocations++;
    }
    this.handedOut.set(buffer, (this.handedOut.get(buffer) ?? 0) + 1);
    this.lastHandout.set(buffer, ++this.handouts);
    this.stats.liveBytes += size;
    this.stats.liveBuffers++;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buffer;
  }

  /** Whether `buffer` sits in the pool unused. */
  isFree(buffer: GPUBuffer): boolean {
    return this.freeSet.has(buffer);
  }

  /** Which hand-out of `buffer` this is (0 for a buffer the pool never made): it changes when the buffer is reused. */
  generation(buffer: GPUBuffer): number {
    return this.handedOut.get(buffer) ?? 0;
  }

  /** A mark for handedOutSince: the number of hand-outs so far. */
  mark(): number {
    return this.handouts;
  }

  /** Whether `buffer` was last handed out after `mark` was taken (a tensor made since, not one that existed then). */
  handedOutSince(buffer: GPUBuffer, mark: number): boolean {
    return (this.lastHandout.get(buffer) ?? 0) > mark;
  }

  /** Takes a specific free buffer out of the pool, as acquire would (a captured step keeps its scratch buffers). */
  reserve(buffer: GPUBuffer): void {
    const list = this.free.get(buffer.size);
    const at = list?.indexOf(buffer) ?? -1;
    if (!list || at < 0) throw new RangeError('reserve: the buffer is not in the pool');
    list.splice(at, 1);
    this.freeSet.delete(buffer);
    this.handedOut.set(buffer, (this.handedOut.get(buffer) ?? 0) + 1);
    this.lastHandout.set(buffer, ++this.handouts);
    this.stats.pooledBytes -= buffer.size;
    this.stats.liveBytes += buffer.size;
    this.stats.liveBuffers++;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
  }

  /**
   * Returns a buffer to its bucket. The bucket stays sorted so that acquire() always hands out its oldest free
   * buffer: which buffer a tensor gets then depends only on which are free, not on the order they were released
   * in, so a step that repeats gets the same buffers each time — and finds its bind groups (one per kernel and
   * set of buffers, core/engine.ts) already made, instead of creating new ones step after step.
   */
  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    const id = this.serial.get(buffer) ?? -1;
    // Binary search for the first element older than `buffer` (the list is newest first).
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.serial.get(list[mid]) ?? -1) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buffer);
    this.freeSet.add(buffer);
    this.stats.liveBytes -= size;
    this.stats.liveBuffers--;
    this.stats.pooledBytes += size;
  }

  snapshot(): MemoryStats {
    return { ...this.stats };
  }

  /** Starts a new peak from what is live now (to measure the peak of one piece of work). */
  resetPeak(): void {
    this.stats.peakBytes = this.stats.liveBytes;
  }

  /** Takes every pooled buffer out of the pool; the caller destroys them once queued work is done. */
  drain(): GPUBuffer[] {
    const all = [...this.free.values()].flat();
    this.free.clear();
    this.freeSet.clear();
    this.stats.pooledBytes = 0;
    return all;
  }
}
