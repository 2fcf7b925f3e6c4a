import { status, type ServiceError } from '@grpc/grpc-js';
import { callUnary, type MeshClients } from '../services/common/grpc-client.js';
import { RunState, RunView, type SubmitRunRequest, type SubscribeResponse } from '../services/common/proto.js';

/** A submit request for an inline pipeline document. */
export function submitOf(document: string, fields: Partial<SubmitRunRequest> = {}): SubmitRunRequest {
  return { document, inputs: {}, idempotencyKey: '', priority: 0, deadline: '', labels: {}, ...fields };
}

/**
 * Registers a pipeline document and returns the request that runs it by
 * name, as a deployed pipeline is run (its text is parsed and validated once,
 * at registration, not on every run).
 */
export async function registered(clients: MeshClients, document: string): Promise<SubmitRunRequest> {
  const { pipeline } = await callUnary(clients.scheduler.registerPipeline.bind(clients.scheduler), { document });
  return submitOf('', { document: undefined, pipelineRef: pipeline!.name });
}

/** A chain of `length` noop stages. */
export function chainDocument(name: string, length: number): string {
  const stages = Array.from({ length }, (_, i) => `  - { id: s${i}, framework: noop${i ? `, needs: [s${i - 1}]` : ''} }`);
  return `name: ${name}\nstages:\n${stages.join('\n')}\n`;
}

/** One noop stage fanning out to `width` noop stages that fan back in to one. */
export function fanoutDocument(name: string, width: number): string {
  const middle = Array.from({ length: width }, (_, i) => `  - { id: m${i}, framework: noop, needs: [start] }`);
  return `name: ${name}\nstages:\n  - { id: start, framework: noop }\n${middle.join('\n')}\n  - { id: end, framework: noop, needs: [${middle.map((_, i) => `m${i}`).join(', ')}] }\n`;
}

/** `count` independent sleep stages of `sleep`, at most `concurrency` in flight. */
export function sleepDocument(name: string, count: number, concurrency: number, sleep: string): string {
  const stages = Array.from({ length: count }, (_, i) => `  - { id: s${i}, framework: sleep, run: { duration: ${sleep} } }`);
  return `name: ${name}\nconcurrency: { max: ${concurrency} }\nstages:\n${stages.join('\n')}\n`;
}

/**
 * Counts `run.finished` events of pipelines named `pipeline` until `expected`
 * arrive or `timeoutMs` passes; resolves with the finish time of each run (ms since epoch).
 */
export function awaitFinishedRuns(clients: MeshClients, pipeline: string, expected: number, timeoutMs: number): { done: Promise<Map<string, number>>; ready: Promise<void> } {
  const finished = new Map<string, number>();
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  const done = new Promise<Map<string, number>>((resolve, reject) => {
    const stream = clients.eventBus.subscribe({ subjects: ['run.finished'], filter: { pipeline }, newOnly: true, consumer: '', ackTimeout: '', maxDeliver: 0 });
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`only ${finished.size} of ${expected} runs of ${pipeline} finished in ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on('metadata', () => markReady());
    stream.on('data', (m: SubscribeResponse) => {
      finished.set(m.event!.attributes.run_id ?? '', Date.now());
      if (finished.size >= expected) {
        clearTimeout(timer);
        stream.cancel();
        resolve(finished);
      }
    });
    stream.on('error', (err: ServiceError) => {
      if (err.code !== status.CANCELLED) {
        clearTimeout(timer);
        reject(err);
      }
    });
  });
  // The server sends headers once the subscription is registered; give it a moment either way.
  setTimeout(markReady, 200);
  return { done, ready };
}

/** Submits every request, at most `inFlight` at a time; returns each run's id and submit time. */
export async function submitAll(clients: MeshClients, requests: SubmitRunRequest[], inFlight = 64): Promise<Map<string, number>> {
  const submitted = new Map<string, number>();
  let next = 0;
  const lane = async () => {
    while (next < requests.length) {
      const request = requests[next++]!;
      const at = Date.now();
      const { run } = await callUnary(clients.scheduler.submitRun.bind(clients.scheduler), request, { timeoutMs: 60_000 });
      submitted.set(run!.runId, at);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return submitted;
}

/** Runs one pipeline with RunAndWait and returns the elapsed time and whether it succeeded. */
export async function runAndWait(clients: MeshClients, submit: SubmitRunRequest, { view = RunView.RUN_VIEW_FULL, timeoutMs = 120_000 } = {}): Promise<{ ms: number; succeeded: boolean }> {
  const started = performance.now();
  const { run } = await callUnary(clients.scheduler.runAndWait.bind(clients.scheduler), { submit, waitTimeout: `${timeoutMs}ms`, view }, { timeoutMs: timeoutMs + 5_000 });
  return { ms: performance.now() - started, succeeded: run?.state === RunState.RUN_STATE_SUCCEEDED };
}

/** p-th percentile of the values (nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
