import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import type { Artifact } from '../../common/proto.js';

/** Artifacts recorded per stage at most. */
const MAX_ARTIFACTS = 100;

function patternToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
}

/**
 * Finds the files a stage declared as artifacts, relative to `cwd`: plain
 * paths, or patterns with `*` and `?` in their last segment (`dist/*.tgz`).
 * Missing files are simply not listed.
 */
export async function collectArtifacts(patterns: readonly string[], cwd: string): Promise<Artifact[]> {
  const found = new Map<string, number>();
  for (const pattern of patterns) {
    const full = join(cwd, pattern);
    const names = /[*?]/.test(basename(pattern))
      ? (await readdir(dirname(full)).catch(() => [] as string[])).filter((n) => patternToRegExp(basename(pattern)).test(n)).map((n) => join(dirname(full), n))
      : [full];
    for (const path of names) {
      const info = await stat(path).catch(() => undefined);
      if (info?.isFile() && found.size < MAX_ARTIFACTS) found.set(relative(cwd, path), info.size);
    }
  }
  return [...found].map(([path, sizeBytes]) => ({ path, sizeBytes }));
}
