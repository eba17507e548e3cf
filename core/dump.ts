// CLIPGPU_DUMP_WGSL=<dir>: every shader the engine compiles is written to <dir> as it runs, one file per kernel
// named by kernel (its name carries the variant, tile and dtypes) and adapter, opening with a comment that says
// what it is. A reader can then open exactly the WGSL that ran. Node only (a page has no environment or files):
// the file system is reached through process.getBuiltinModule, so this module stays importable in a browser.
import type { Kernel } from './kernel.ts';

interface NodeProcess {
  env: Record<string, string | undefined>;
  getBuiltinModule?: (name: string) => unknown;
}
interface NodeFs {
  mkdirSync(path: string, options: { recursive: true }): void;
  writeFileSync(path: string, text: string): void;
}

/** Filesystem-safe form of a name: letters, digits, '.', '_' and '-' kept, runs of anything else become '-'. */
const slug = (text: string) => text.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);

/**
 * The engine's dump hook: null unless CLIPGPU_DUMP_WGSL names a directory in Node. `adapter` names the device
 * the shaders are compiled for.
 */
export function shaderDump(adapter: () => string): ((kernel: Kernel, key: string) => void) | null {
  const proc = (globalThis as { process?: NodeProcess }).process;
  const dir = proc?.env?.CLIPGPU_DUMP_WGSL;
  if (!dir || !proc?.getBuiltinModule) return null;
  const fs = proc.getBuiltinModule('node:fs') as NodeFs;
  fs.mkdirSync(dir, { recursive: true });
  const used = new Map<string, number>();
  return (kernel, key) => {
    // Two keys can build one name (the same kernel at two vector widths, say): number the later ones.
    const base = `${slug(kernel.spec.name)}.${slug(adapter())}`;
    const n = (used.get(base) ?? 0) + 1;
    used.set(base, n);
    const header = [
      `// kernel  ${kernel.spec.name}`,
      `// key     ${key}`,
      `// adapter ${adapter()}`,
      `// bindings: ${kernel.bindingNames.join(', ')} (storage, in binding order), then the uniforms \`u\``,
      '',
    ].join('\n');
    fs.writeFileSync(`${dir}/${base}${n > 1 ? `.${n}` : ''}.wgsl`, `${header}${kernel.source}\n`);
  };
}
