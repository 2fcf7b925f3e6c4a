import type { Command } from 'commander';
import { callUnary } from '../services/common/grpc-client.js';
import type { Event, EventBusClient } from '../services/common/proto.js';
import { toCloudEvent } from '../services/event-bus/cloud-event.js';
import { subscribeEvents, subscribeRequest } from '../services/event-bus/event-stream.js';
import { isValidSubjectPattern } from '../services/event-bus/subject-pattern.js';
import { addressOf } from './address.js';
import { CliError, ExitCode } from './cli-error.js';
import { withMesh } from './with-mesh.js';

/** What `stagemesh events` shows. */
export interface EventsOptions {
  /** Subject patterns (`stage.*`, `run.>`); none means every event. */
  subjects: string[];
  /** Only events of this run. */
  runId?: string;
  /** Keep streaming new events until interrupted. */
  follow: boolean;
  /** Stored events shown first (without --follow: the events shown). */
  last: number;
  /** CloudEvents structured JSON, one event per line. */
  json: boolean;
}

/** One line per event: time, sequence, type, subject and attributes. */
export function formatEventLine(event: Event): string {
  const attributes = Object.entries(event.attributes)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${event.time?.toISOString() ?? ''}  #${event.sequence}  ${event.type.padEnd(18)}  ${event.subject}${attributes ? `  ${attributes}` : ''}`;
}

/**
 * Prints events from the bus: the last `last` matching ones, then (with
 * `follow`) every new one until `signal` aborts. Without `follow` it stops
 * once it has shown the events stored when it started.
 */
export async function printEvents(client: EventBusClient, options: EventsOptions, write: (line: string) => void, signal: AbortSignal): Promise<number> {
  const filter: Record<string, string> = options.runId ? { run_id: options.runId } : {};
  const start = options.last > 0 ? { lastN: options.last } : { newOnly: true };
  let stopAt = Number.POSITIVE_INFINITY;
  if (!options.follow) {
    const info = await callUnary(client.getTopicInfo.bind(client), { subject: '>' }, { timeoutMs: 10_000, signal });
    stopAt = info.lastSequence;
    if (stopAt === 0 || options.last === 0) return 0;
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  signal.addEventListener('abort', stop, { once: true });
  // Without --follow, matching events may end before the last stored one: stop when the stream goes quiet.
  let idle: NodeJS.Timeout | undefined;
  const quiet = () => {
    clearTimeout(idle);
    if (!options.follow) idle = setTimeout(stop, 500);
  };
  quiet();
  let shown = 0;
  try {
    for await (const { event } of subscribeEvents(client, subscribeRequest({ subjects: options.subjects, filter, ...start }), controller.signal)) {
      if (!event) continue;
      quiet();
      write(options.json ? JSON.stringify(toCloudEvent(event)) : formatEventLine(event));
      shown++;
      if (event.sequence >= stopAt) break;
    }
  } finally {
    clearTimeout(idle);
    signal.removeEventListener('abort', stop);
  }
  return shown;
}

/** Registers `stagemesh events`. */
export function registerEventsCommand(program: Command): void {
  program
    .command('events')
    .description('show events from the event bus; --follow streams them live')
    .option('-f, --follow', 'keep streaming new events until interrupted (Ctrl-C)')
    .option('--subject <pattern...>', 'subject patterns such as stage.* or run.> (default: every event)')
    .option('--run <run-id>', 'only the events of this run')
    .option('--last <n>', 'stored events to show first (default 20 without --follow, 0 with it)')
    .option('--json', 'print CloudEvents structured JSON, one event per line')
    .action(async (opts: { follow?: boolean; subject?: string[]; run?: string; last?: string; json?: boolean }) => {
      const subjects = opts.subject ?? [];
      for (const s of subjects) if (!isValidSubjectPattern(s)) throw new CliError(`--subject expects a pattern such as stage.* or run.>, got "${s}"`, ExitCode.USAGE);
      const last = Number(opts.last ?? (opts.follow ? 0 : 20));
      if (!Number.isInteger(last) || last < 0) throw new CliError(`--last expects a non-negative integer, got "${opts.last}"`, ExitCode.USAGE);
      await withMesh(addressOf(program), (clients, signal) =>
        printEvents(clients.eventBus, { subjects, runId: opts.run, follow: opts.follow ?? false, last, json: opts.json ?? false }, (line) => process.stdout.write(`${line}\n`), signal),
      );
    });
}
