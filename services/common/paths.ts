import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cachedRoot: string | undefined;

/**
 * The stagemesh package root (the folder holding package.json and generated/),
 * found by walking up from this file, so it works from sources and from dist/.
 */
export function packageRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'generated')) || !existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('stagemesh: cannot find the package root (run `npm run build` first)');
    dir = parent;
  }
  cachedRoot = dir;
  return dir;
}

/** Path of the descriptor set built from proto/ (feeds reflection and Envoy). */
export function descriptorSetPath(): string {
  return join(packageRoot(), 'generated', 'stagemesh.binpb');
}
