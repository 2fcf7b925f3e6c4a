import { InvalidArgumentError } from '../common/errors.js';
import { serverStream, unary } from '../common/handlers.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import type { Logger } from '../common/logger.js';
import { parseDurationMs } from '../common/duration.js';
import { readPipelineOrThrow } from '../common/pipeline-document.js';
import { Run, RunState, RunView, SchedulerService as SchedulerDefinition, SERVICE_NAMES, type SchedulerServer } from '../common/proto.js';
import { runStateFromWire, runSummary, TERMINAL_RUN_STATES, type RunStatus, type RunStore } from './run-store.js';
import type { Scheduler } from './scheduler.js';

const DEFAULT_PAGE_SIZE = 50;
/**
 * How often a wait or watch reads a run that another scheduler replica
 * advances (the distributed profile): this one hears of no change to it.
 */
const PEER_RUN_POLL_MS = 200;
const MAX_PAGE_SIZE = 1000;

function pageSize(requested: number): number {
  return Math.min(MAX_PAGE_SIZE, requested || DEFAULT_PAGE_SIZE);
}

function requireRunId(runId: string): string {
  if (!runId) throw new InvalidArgumentError('run_id is required', 'run_id');
  return runId;
}

function isFinished(run: Run): boolean {
  const status = runStateFromWire(run.state);
  return status !== undefined && TERMINAL_RUN_STATES.has(status);
}

/** True when a request asks for the run without its stages (RUN_VIEW_FULL is the default). */
function isBasic(view: RunView): boolean {
  if (view === RunView.RUN_VIEW_BASIC) return true;
  if (view === RunView.RUN_VIEW_UNSPECIFIED || view === RunView.RUN_VIEW_FULL) return false;
  throw new InvalidArgumentError('expected RUN_VIEW_BASIC or RUN_VIEW_FULL', 'view');
}

function decodeRunCursor(token: string): { createdAt: string; runId: string } | undefined {
  if (!token) return undefined;
  const [createdAt, runId] = Buffer.from(token, 'base64url').toString('utf8').split('|');
  if (!createdAt || !runId || Number.isNaN(Date.parse(createdAt))) throw new InvalidArgumentError('not a page token from ListRuns', 'page_token');
  return { createdAt, runId };
}

/**
 * Waits until the run finishes, `waitMs` passes or `signal` aborts; then
 * returns the run as it stands (it keeps running if it has not finished).
 */
async function waitForRun(scheduler: Scheduler, runId: string, waitMs: number, signal: AbortSignal, basic: boolean): Promise<Run> {
  let wake: () => void = () => undefined;
  const unsubscribe = scheduler.onRunChange(runId, () => wake());
  const timer = setTimeout(() => wake(), waitMs);
  const onAbort = () => wake();
  signal.addEventListener('abort', onAbort);
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const changed = new Promise<void>((resolve) => (wake = resolve));
      // A run this scheduler is still advancing has not finished: skip the store until it changes.
      if (!scheduler.isActive(runId) || Date.now() >= deadline || signal.aborted) {
        const run = await scheduler.getRun(runId, { basic });
        if (isFinished(run) || Date.now() >= deadline || signal.aborted) return run;
        if (!scheduler.isActive(runId)) setTimeout(() => wake(), PEER_RUN_POLL_MS).unref();
      }
      await changed;
    }
  } finally {
    clearTimeout(timer);
    unsubscribe();
    signal.removeEventListener('abort', onAbort);
  }
}

/** The scheduler service: pipelines and runs over gRPC. */
export function createSchedulerService(logger: Logger, scheduler: Scheduler, runs: RunStore): ServiceRegistration {
  const implementation: Partial<SchedulerServer> = {
    registerPipeline: unary(logger, async (request) => ({ pipeline: await scheduler.register(readPipelineOrThrow(request)) })),
    getPipeline: unary(logger, async (request) => {
      if (!request.name) throw new InvalidArgumentError('name is required', 'name');
      return { pipeline: await runs.getPipeline(request.name, request.version) };
    }),
    listPipelines: unary(logger, async (request) => {
      const size = pageSize(request.pageSize);
      const pipelines = await runs.listPipelines(size, Buffer.from(request.pageToken, 'base64url').toString('utf8'));
      const last = pipelines.length === size ? pipelines[pipelines.length - 1] : undefined;
      return { pipelines, nextPageToken: last ? Buffer.from(last.name).toString('base64url') : '' };
    }),
    submitRun: unary(logger, async (request) => ({ run: await scheduler.submit(request) })),
    runAndWait: unary(logger, async (request, signal, call) => {
      if (!request.submit) throw new InvalidArgumentError('submit is required', 'submit');
      const basic = isBasic(request.view);
      let waitMs = Number.POSITIVE_INFINITY;
      if (request.waitTimeout) {
        waitMs = parseDurationMs(request.waitTimeout) ?? Number.NaN;
        if (Number.isNaN(waitMs)) throw new InvalidArgumentError('expected a duration such as 30s', 'wait_timeout');
      }
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
      // Answer a little before the caller's deadline, so it gets the run rather than DEADLINE_EXCEEDED.
      if (Number.isFinite(deadlineMs)) waitMs = Math.min(waitMs, Math.max(0, deadlineMs - Date.now() - 200));
      // The wait ends at a fixed time: the submit's own duration comes out of it, not on top of it.
      const waitUntil = Date.now() + waitMs;
      const runId = await scheduler.start(request.submit);
      const run = await waitForRun(scheduler, runId, Math.min(Math.max(0, waitUntil - Date.now()), 2 ** 31 - 1), signal, basic);
      return { run, finished: isFinished(run) };
    }),
    getRun: unary(logger, async (request) => ({ run: await scheduler.getRun(requireRunId(request.runId), { basic: isBasic(request.view) }) })),
    listRuns: unary(logger, async (request) => {
      const size = pageSize(request.pageSize);
      const state: RunStatus | undefined = request.state === RunState.RUN_STATE_UNSPECIFIED ? undefined : runStateFromWire(request.state);
      const rows = await runs.listRuns({ limit: size, before: decodeRunCursor(request.pageToken), pipelineName: request.pipelineName || undefined, state });
      const last = rows.length === size ? rows[rows.length - 1] : undefined;
      return {
        runs: rows.map(runSummary),
        nextPageToken: last ? Buffer.from(`${last.created_at_text ?? last.created_at.toISOString()}|${last.run_id}`).toString('base64url') : '',
      };
    }),
    cancelRun: unary(logger, async (request) => {
      await scheduler.cancel(requireRunId(request.runId), request.reason);
      return { run: await scheduler.getRun(request.runId) };
    }),
    watchRun: serverStream(logger, async (request, write, signal) => {
      const runId = requireRunId(request.runId);
      let dirty = true;
      let wake: () => void = () => undefined;
      const unsubscribe = scheduler.onRunChange(runId, () => {
        dirty = true;
        wake();
      });
      const onAbort = () => wake();
      signal.addEventListener('abort', onAbort);
      try {
        let last = '';
        while (!signal.aborted) {
          if (!dirty) {
            await new Promise<void>((resolve) => {
              wake = resolve;
              if (!scheduler.isActive(runId)) {
                setTimeout(() => {
                  dirty = true;
                  resolve();
                }, PEER_RUN_POLL_MS).unref();
              }
            });
            continue;
          }
          dirty = false;
          const run = await scheduler.getRun(runId);
          const snapshot = JSON.stringify(Run.toJSON(run));
          if (snapshot !== last) {
            last = snapshot;
            await write({ run });
          }
          if (isFinished(run)) return;
        }
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
      }
    }),
    reportOutcomes: unary(logger, async (request) => scheduler.applyOutcomes(request.outcomes)),
  };
  return { name: SERVICE_NAMES.scheduler, definition: SchedulerDefinition, implementation };
}
