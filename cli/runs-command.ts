import type { Command } from 'commander';
import { formatDurationMs } from '../services/common/duration.js';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { GetRunRequest, ListRunsResponse, Run } from '../services/common/proto.js';
import { CliError, ExitCode } from './cli-error.js';
import { describeCallError, formatRunSummary, runStateName } from './output.js';
import { addressOf } from './address.js';
import { followRun, runExitCode } from './run-command.js';

async function withClients<T>(program: Command, fn: (clients: ReturnType<typeof createMeshClients>) => Promise<T>): Promise<T> {
  const address = addressOf(program);
  const clients = createMeshClients(address);
  try {
    return await fn(clients);
  } catch (err) {
    throw err instanceof CliError ? err : describeCallError(err, address);
  } finally {
    clients.close();
  }
}

function printRun(run: Run, json: boolean | undefined): void {
  process.stdout.write(json ? `${JSON.stringify(Run.toJSON(run), null, 2)}\n` : `${formatRunSummary(run)}\n`);
}

export function registerRunsCommand(program: Command): void {
  const runs = program.command('runs').description('work with existing runs');
  runs
    .command('get')
    .description('show one run with its stages')
    .argument('<run-id>')
    .option('--json', 'print the run as proto3 JSON')
    .action(async (runId: string, opts: { json?: boolean }) => {
      const { run } = await withClients(program, (c) => callUnary(c.scheduler.getRun.bind(c.scheduler), GetRunRequest.fromPartial({ runId })));
      printRun(run!, opts.json);
    });
  runs
    .command('list')
    .description('list runs, newest first')
    .option('--limit <n>', 'how many', '20')
    .option('--pipeline <name>', 'only runs of this pipeline')
    .option('--json', 'print the response as proto3 JSON')
    .action(async (opts: { limit: string; pipeline?: string; json?: boolean }) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new CliError(`--limit expects a positive integer, got "${opts.limit}"`, ExitCode.USAGE);
      const response = await withClients(program, (c) =>
        callUnary(c.scheduler.listRuns.bind(c.scheduler), { pageSize: limit, pageToken: '', pipelineName: opts.pipeline ?? '', state: 0 }),
      );
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(ListRunsResponse.toJSON(response), null, 2)}\n`);
        return;
      }
      for (const run of response.runs) {
        const took = run.finishedAt && run.createdAt ? formatDurationMs(run.finishedAt.getTime() - run.createdAt.getTime()) : '';
        process.stdout.write(`${run.runId}  ${runStateName(run.state).padEnd(9)}  ${`${run.pipelineName}@${run.pipelineVersion}`.padEnd(30)}  ${run.createdAt?.toISOString() ?? ''}  ${took}\n`);
      }
    });
  runs
    .command('cancel')
    .description('cancel a run; its running stages are stopped')
    .argument('<run-id>')
    .option('--reason <text>', 'why', '')
    .option('--json', 'print the run as proto3 JSON')
    .action(async (runId: string, opts: { reason: string; json?: boolean }) => {
      const { run } = await withClients(program, (c) => callUnary(c.scheduler.cancelRun.bind(c.scheduler), { runId, reason: opts.reason }));
      printRun(run!, opts.json);
    });
  runs
    .command('watch')
    .description('follow a run until it finishes')
    .argument('<run-id>')
    .option('--json', 'print the final run as proto3 JSON')
    .action(async (runId: string, opts: { json?: boolean }) => {
      const run = await followRun(addressOf(program), runId, Boolean(opts.json));
      printRun(run, opts.json);
      process.exitCode = runExitCode(run);
    });
}
