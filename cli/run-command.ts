import type { Command } from 'commander';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { subscribeEvents, subscribeRequest } from '../services/event-bus/event-stream.js';
import { GetRunRequest, Run, RunState } from '../services/common/proto.js';
import { CliError, ExitCode } from './cli-error.js';
import { parseKeyValues, readInputFile } from './files.js';
import { describeCallError, formatRunSummary, formatStageEvent } from './output.js';
import { addressOf } from './address.js';

const FINISHED = new Set([RunState.RUN_STATE_SUCCEEDED, RunState.RUN_STATE_FAILED, RunState.RUN_STATE_CANCELLED]);

/** Exit code of a finished (or still running) run. */
export function runExitCode(run: Run): ExitCode {
  return run.state === RunState.RUN_STATE_SUCCEEDED ? ExitCode.OK : ExitCode.FAILED;
}

/** How often the run is read while following it, in case the bus no longer holds some of its events. */
const POLL_MS = 2_000;

/**
 * Follows a run until it finishes and returns the final run. The live
 * progress comes from the event bus: each lifecycle event of the run is
 * printed as it is published (unless `quiet`). The run is also read every
 * two seconds, so a bus that dropped events (retention) cannot leave the
 * command waiting.
 */
export async function followRun(address: string, runId: string, quiet: boolean): Promise<Run> {
  const clients = createMeshClients(address);
  const controller = new AbortController();
  const getRun = async () => (await callUnary(clients.scheduler.getRun.bind(clients.scheduler), GetRunRequest.fromPartial({ runId }))).run!;
  let poll: NodeJS.Timeout | undefined;
  try {
    const first = await getRun();
    if (FINISHED.has(first.state)) return first;
    const width = Math.max(...first.stages.map((s) => s.stageId.length), 5);
    poll = setInterval(() => {
      getRun().then(
        (run) => FINISHED.has(run.state) && controller.abort(),
        () => undefined,
      );
    }, POLL_MS);
    // From just before the run was created, so no event of it is missed.
    const fromTime = new Date((first.createdAt?.getTime() ?? Date.now()) - 1_000);
    const request = subscribeRequest({ subjects: ['stage.*', 'run.finished'], filter: { run_id: runId }, fromTime });
    for await (const { event } of subscribeEvents(clients.eventBus, request, controller.signal)) {
      if (!event) continue;
      if (event.type === 'run.finished') break;
      if (!quiet) process.stderr.write(`${formatStageEvent(event, width)}\n`);
    }
    return await getRun();
  } catch (err) {
    throw describeCallError(err, address);
  } finally {
    clearInterval(poll);
    controller.abort();
    clients.close();
  }
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
