import type { Command } from 'commander';
import { createLogger, LOG_LEVELS, type LogLevel } from '../services/common/logger.js';
import { Worker } from '../services/worker/worker.js';
import { addressOf } from './address.js';
import { CliError, ExitCode } from './cli-error.js';

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('run a worker that joins a running mesh and runs stages of the frameworks it can run here')
    .option('--frameworks <list>', 'comma-separated frameworks to offer (default: every one detected on this machine)')
    .option('--capacity <n>', 'stages run at once', '4')
    .option('--node-id <id>', 'node id (default: host name and a random suffix)')
    .option('--log-level <level>', 'log level', 'info')
    .action(async (opts: { frameworks?: string; capacity: string; nodeId?: string; logLevel: string }) => {
      const capacity = Number(opts.capacity);
      if (!Number.isInteger(capacity) || capacity < 1) throw new CliError(`--capacity expects a positive integer, got "${opts.capacity}"`, ExitCode.USAGE);
      if (!(LOG_LEVELS as readonly string[]).includes(opts.logLevel)) throw new CliError(`--log-level expects one of ${LOG_LEVELS.join(', ')}`, ExitCode.USAGE);
      const frameworks = opts.frameworks?.split(',').map((f) => f.trim()).filter(Boolean);
      const address = addressOf(program);
      const logger = createLogger({ level: opts.logLevel as LogLevel, name: 'stagemesh-worker' });
      const worker = await Worker.start({ address, logger, capacity, nodeId: opts.nodeId, frameworks }).catch((err: unknown) => {
        throw new CliError(`--frameworks: ${(err as Error).message}`, ExitCode.USAGE, { cause: err });
      });
      process.stdout.write(`stagemesh worker ${worker.nodeId} ready: frameworks ${worker.frameworks.join(', ')}, capacity ${capacity}, coordinator ${address}\n`);
      const onSignal = () => void worker.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      await worker.closed;
    });
}
