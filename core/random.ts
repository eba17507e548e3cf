// A small seeded PRNG for host-side randomness (data order, augmentation, test inputs); GPU random numbers
// come from the Philox generator in kernels/creation.ts.

/** mulberry32: uniform numbers in [0, 1) from a 32-bit seed, fast and reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
