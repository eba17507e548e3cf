// Opens the device before any suite is defined (imported first by all.ts).
import { init } from '../kernels/index.ts';

await init();
