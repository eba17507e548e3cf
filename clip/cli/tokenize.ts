// `npm run -s tokenize`: a JSON array of strings on stdin → a JSON array of id arrays (context 77) on stdout.
import { readTokenizer } from '../io/vocab.ts';

/** The command line, for --help. */
export const USAGE = 'usage: echo \'["a photo of a cat."]\' | clipgpu tokenize   (a JSON array of strings on stdin; a JSON array of 77-id arrays on stdout)';

/** More text than this on stdin is refused before it is held in memory (it is read whole, then parsed). */
const MAX_INPUT_BYTES = 16 << 20;

/** `clipgpu tokenize`: reads stdin; it takes no arguments. */
export async function main(argv: string[]): Promise<void> {
  if (argv.length) {
    console.error(`tokenize: takes no arguments, got '${argv[0]}'\n${USAGE}`);
    process.exit(2);
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const c of process.stdin) {
    bytes += (c as Buffer).length;
    if (bytes > MAX_INPUT_BYTES) {
      console.error(`tokenize: stdin is over ${MAX_INPUT_BYTES >> 20} MiB: tokenize it in parts`);
      process.exit(2);
    }
    chunks.push(c as Buffer);
  }
  let texts: unknown;
  try {
    texts = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    console.error(`tokenize: stdin is not JSON (${(e as Error).message})`);
    process.exit(2);
  }
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === 'string')) {
    console.error('tokenize: expected a JSON array of strings on stdin');
    process.exit(2);
  }
  const tok = readTokenizer();
  const ids = tok.tokenize(texts as string[], { contextLength: 77 });
  console.log(JSON.stringify((texts as string[]).map((_, i) => Array.from(ids.subarray(i * 77, (i + 1) * 77)))));
}
