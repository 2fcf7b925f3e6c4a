import type { Command } from 'commander';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { Run, RunState, type WatchRunResponse } from '../services/common/proto.js';
import { CliError, ExitCode } from './cli-error.js';
import { parseKeyValues, readInputFile } from './files.js';
import { describeCallError, formatRunSummary, formatStageLine, stageStateName } from './output.js';
import { addressOf } from './address.js';

const FINISHED = new Set([RunState.RUN_STATE_SUCCEEDED, RunState.RUN_STATE_FAILED, RunState.RUN_STATE_CANCELLED]);

/** Exit code of a finished (or still running) run. */
export function runExitCode(run: Run): ExitCode {
  return run.state === RunState.RUN_STATE_SUCCEEDED ? ExitCode.OK : ExitCode.FAILED;
}

/**
 * Follows a run over WatchRun until it finishes, printing each stage as its
 * state changes (unless `quiet`), and returns the final run.
 */
export async function followRun(address: string, runId: string, quiet: boolean): Promise<Run> {
  const clients = createMeshClients(address);
  const seen = new Map<string, number>();
  let last: Run | undefined;
  try {
    const stream = clients.scheduler.watchRun({ runId });
    for await (const message of stream as AsyncIterable<WatchRunResponse>) {
      const run = message.run!;
      last = run;
      if (!quiet) {
        const width = Math.max(...run.stages.map((s) => s.stageId.length), 5);
        for (const stage of run.stages) {
          if (seen.get(stage.stageId) === stage.state) continue;
          const first = !seen.has(stage.stageId);
          seen.set(stage.stageId, stage.state);
          if (first && stageStateName(stage.state) === 'PENDING') continue;
          process.stderr.write(`${formatStageLine(stage, width)}\n`);
        }
      }
      if (FINISHED.has(run.state)) break;
    }
  } catch (err) {
    throw describeCallError(err, address);
  } finally {
    clients.close();
  }
  if (!last) throw new CliError(`run ${runId} sent no state`);
  return last;
}

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('submit a pipeline file and, by default, wait for the run to finish')
    .argument('<file>', 'pipeline definition (YAML or JSON)')
    .option('--wait', 'wait for the run to finish, showing each stage (the default)', true)
    .option('-d, --detach', 'submit and print the run id without waiting')
    .option('--json', 'print the final run as proto3 JSON')
    .option('-i, --input <key=value>', 'override a pipeline input (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--idempotency-key <key>', 'submitting again with the same key returns the same run')
    .option('--priority <n>', 'higher runs first', '0')
    .option('--deadline <duration>', 'fail the run if it has not finished after this long (e.g. 30m)')
    .action(async (file: string, opts: { detach?: boolean; json?: boolean; input: string[]; idempotencyKey?: string; priority: string; deadline?: string }) => {
      const address = addressOf(program);
      const document = await readInputFile(file);
      const priority = Number(opts.priority);
      if (!Number.isInteger(priority)) throw new CliError(`--priority expects an integer, got "${opts.priority}"`, ExitCode.USAGE);
      const inputs = parseKeyValues(opts.input, '--input');
      const clients = createMeshClients(address);
      let run: Run;
      try {
        const response = await callUnary(clients.scheduler.submitRun.bind(clients.scheduler), {
          document,
          inputs,
          idempotencyKey: opts.idempotencyKey ?? '',
          priority,
          deadline: opts.deadline ?? '',
          labels: {},
        });
        run = response.run!;
      } catch (err) {
        throw describeCallError(err, address);
      } finally {
        clients.close();
      }
      if (opts.detach) {
        process.stdout.write(opts.json ? `${JSON.stringify(Run.toJSON(run), null, 2)}\n` : `${run.runId}\n`);
        return;
      }
      if (!opts.json) process.stderr.write(`run ${run.runId} submitted (${run.pipelineName}@${run.pipelineVersion})\n`);
      const final = await followRun(address, run.runId, Boolean(opts.json));
      process.stdout.write(opts.json ? `${JSON.stringify(Run.toJSON(final), null, 2)}\n` : `${formatRunSummary(final)}\n`);
      process.exitCode = runExitCode(final);
    });
}
