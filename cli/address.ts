import type { Command } from 'commander';

/** Default address of the embedded mesh. */
export const DEFAULT_ADDRESS = '127.0.0.1:50051';

/** The mesh address: --address, then STAGEMESH_ADDRESS, then the default. */
export function addressOf(program: Command): string {
  return (program.opts().address as string | undefined) ?? process.env.STAGEMESH_ADDRESS ?? DEFAULT_ADDRESS;
}
