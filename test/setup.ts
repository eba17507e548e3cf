// Opens the device before any suite is defined (imported first by all.ts).
import { init } from '../ops/index.ts';

await init();
