// `npm run demo [-- --run runs/scenes] [--port 8080]`: builds the demo page and serves it on localhost. The page
// trains the scenes CLIP in the tab and classifies images zero-shot with any model — the run folder given
// here (default runs/scenes when it exists) is one click away.
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startDemo } from './host.ts';

/** The command line, for --help. */
export const USAGE = 'usage: clipgpu demo [--run runs/scenes] [--port 8080]   (serves the browser demo on localhost)';

/** `clipgpu demo [--run DIR] [--port 8080]`; `argv` holds the flags only. */
export async function main(argv: string[]): Promise<void> {
  try {
    const { values } = parseArgs({ args: argv, options: { run: { type: 'string' }, port: { type: 'string', default: '8080' } } });
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0…65535, got '${values.port}'`);
    const run = values.run ?? (existsSync('runs/scenes/model.safetensors') ? 'runs/scenes' : undefined);
    const server = await startDemo({ run, port });
    console.log(`demo: ${server.url}/`);
    console.log(run ? `  "Load the server's run" loads ${run}/model.safetensors` : '  no run folder exposed (pass --run DIR)');
    console.log('  open it in a browser with WebGPU (Chrome/Edge 113+; Chromium on Linux needs --enable-unsafe-webgpu); Ctrl-C stops');
  } catch (e) {
    console.error(`demo: ${(e as Error).message}`);
    process.exit(1);
  }
}
