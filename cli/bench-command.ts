import type { Command } from 'commander';
import { runBench } from '../bench/run-bench.js';
import { CliError, ExitCode } from './cli-error.js';

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('measure throughput and latency; prints one JSON object (starts its own embedded mesh unless --address is given)')
    .option('--json', 'print only the JSON result (the default output is JSON too)')
    .option('--only <list>', 'comma-separated workloads: chain, fanout, scaling, run_and_wait, validate, event_latency')
    .action(async (opts: { only?: string }) => {
      const address = program.opts().address as string | undefined;
      const only = opts.only?.split(',').map((s) => s.trim());
      const known = ['chain', 'fanout', 'scaling', 'run_and_wait', 'validate', 'event_latency'];
      const unknown = only?.filter((w) => !known.includes(w)) ?? [];
      if (unknown.length) throw new CliError(`--only: unknown workload ${unknown.join(', ')} (known: ${known.join(', ')})`, ExitCode.USAGE);
      const progress = process.stderr.isTTY ? (line: string) => process.stderr.write(`bench: ${line}\n`) : undefined;
      const result = await runBench({ address, only, progress });
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    });
}
