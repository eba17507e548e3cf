// Opens the device before any suite is defined (imported first by all.ts).
import { init } from '../ops/index.ts';

// Tests run the kernels they name; the commands they spawn use the fixed defaults, not this machine's tuning.
process.env.CLIPGPU_TUNE ??= 'off';

await init();
