// Opens the page's WebGPU device before any suite is defined, and exposes the counts to the runner.
import { gpu, init } from '../../ops/index.ts';
import { counts } from '../harness.ts';

await init();
(globalThis as { __counts?: typeof counts }).__counts = counts;
console.log(`adapter: ${gpu().name}; subgroups ${gpu().subgroupSize ?? 'none'}; features ${[...gpu().device.features].sort().join(', ')}`);
