// The whole suite in one process (one GPU device). Run with `npm test`.
import './setup.ts';
import './imports.test.ts';
import './public_api.test.ts';
import { counts } from './harness.ts';
import './elementwise.test.ts';
import './reduce.test.ts';
import './matmul.test.ts';
import './rowwise.test.ts';
import './attention.test.ts';
import './movement.test.ts';
import './conv.test.ts';
import './gradcheck.test.ts';
import './custom.test.ts';
import './autodiff.test.ts';
import './memory.test.ts';
import './errors.test.ts';
import './robustness.test.ts';
import './mlp.test.ts';
import './nn.test.ts';
import './optim.test.ts';
import './safetensors.test.ts';
import './tokenizer.test.ts';
import './clip.test.ts';
import './clip_use.test.ts';
import './pil.test.ts';
import './pytorch.test.ts';
import './mojibake.test.ts';
import './data.test.ts';
import './train.test.ts';
import './reliability.test.ts';
import './stopping.test.ts';
import './run_checks.test.ts';
import './inputs.test.ts';
import './interop.test.ts';
import './tune.test.ts';
import './f16.test.ts';
import './amp.test.ts';
import './capture.test.ts';
import './checkpoint.test.ts';
import './bench.test.ts';

process.on('exit', () => {
  // A closing line CI tools recognise.
  for (const line of counts.skipped) console.log(`skipped: ${line}`);
  console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped.length} skipped`);
});
