#!/usr/bin/env node
// `clipgpu <command> [flags]`: the command-line face of the library, a thin shell over it. Each command is a
// module with `main(argv)` and `USAGE`, imported only when asked for and run in this process, so Ctrl-C and
// SIGTERM reach the trainer itself (no child process in between). The npm scripts call this same file.
import { existsSync, readFileSync } from 'node:fs';
import { exitWithError } from '../clip/cli/common.ts';

interface Command {
  summary: string;
  load: () => Promise<{ main: (argv: string[]) => Promise<void>; USAGE: string }>;
}

const COMMANDS: Record<string, Command> = {
  train: { summary: 'train a CLIP from scratch (built-in datasets or your image–caption files)', load: () => import('../clip/cli/train.ts') },
  zeroshot: { summary: 'classify images zero-shot with a trained or downloaded model', load: () => import('../clip/cli/zeroshot.ts') },
  eval: { summary: 'zero-shot, retrieval and linear-probe evaluation of a model on a built-in dataset', load: () => import('../clip/cli/eval.ts') },
  export: { summary: 'write a run for open_clip or Hugging Face transformers', load: () => import('../clip/cli/export.ts') },
  tokenize: { summary: "CLIP's BPE tokenizer: JSON strings on stdin, token ids on stdout", load: () => import('../clip/cli/tokenize.ts') },
  parity: { summary: 'compare a model with openai/CLIP reference outputs (features, logits, loss, gradients)', load: () => import('../clip/cli/parity.ts') },
  bench: { summary: 'validated kernel benchmarks, next to tfjs-webgpu when it is installed', load: () => import('../bench/index.ts') },
  tune: { summary: "measure this adapter's kernel variants and cache the choices", load: () => import('../bench/tune.ts') },
  demo: { summary: 'serve the browser demo (train and classify in a tab) on localhost', load: () => import('../examples/demo/serve.ts') },
};

const HELP = `usage: clipgpu <command> [flags]   (clipgpu <command> --help for its flags)

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`)
  .join('\n')}

Errors are one line; --debug (or CLIPGPU_DEBUG=1) adds the stack trace. clipgpu --version prints the version.`;

/** The package's version: from the nearest package.json above this module named clipgpu (dist/bin/ or .build/). */
function version(): string {
  for (let dir = new URL('./', import.meta.url); dir.pathname !== '/'; dir = new URL('../', dir)) {
    const file = new URL('package.json', dir);
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'clipgpu') return pkg.version ?? 'unknown';
  }
  return 'unknown';
}

const [name, ...argv] = process.argv.slice(2);
if (name === '--version' || name === '-v') {
  console.log(version());
} else if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
  console.log(HELP);
} else {
  const command = COMMANDS[name];
  if (!command) exitWithError('clipgpu', `unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(', ')} (clipgpu --help)`, 2);
  try {
    const { main, USAGE } = await command.load();
    if (argv.includes('--help') || argv.includes('-h')) console.log(`clipgpu ${name}: ${command.summary}\n${USAGE}`);
    else await main(argv);
  } catch (e) {
    exitWithError(name, e);
  }
}
