/**
 * The harness every benchmark here uses, for timing your own ops and kernels — validate
 * against a reference first, then time (median wall clock per launch; GPU time from timestamp queries where the
 * adapter has them); time two implementations interleaved to compare them on a busy machine.
 * @module clipgpu/bench
 */
export { timeOurs as time, timeOursInterleaved as timeInterleaved, validate, type TimeOptions } from './timing.ts';
