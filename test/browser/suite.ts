// The browser suite (scripts/browser-test.mjs bundles it and runs it in headless Chromium): every kernel test,
// the whole gradcheck table, autodiff and memory, CLIP parity on the oracle fixtures with Node's tolerances,
// and a short training run whose loss must fall — the engine and model code unchanged, on a second WebGPU
// implementation.
import './setup.ts';
import '../elementwise.test.ts';
import '../reduce.test.ts';
import '../matmul.test.ts';
import '../rowwise.test.ts';
import '../attention.test.ts';
import '../movement.test.ts';
import '../conv.test.ts';
import '../gradcheck.test.ts';
import '../autodiff.test.ts';
import '../memory.test.ts';
import '../f16.test.ts';
import './parity.test.ts';
import './train.test.ts';
