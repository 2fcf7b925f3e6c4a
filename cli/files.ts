import { readFile } from 'node:fs/promises';
import { CliError, ExitCode } from './cli-error.js';

/** Reads a pipeline or policy file, or fails with a usage error naming it. */
export async function readInputFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, ExitCode.USAGE, { cause: err });
  }
}

/** Parses repeated `--input key=value` flags. */
export function parseKeyValues(values: readonly string[], flag: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new CliError(`${flag} expects key=value, got "${value}"`, ExitCode.USAGE);
    result[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return result;
}
