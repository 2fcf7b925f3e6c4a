import { OutcomeStatus, type Task } from '../../common/proto.js';
import { emptyEvidence, type AttemptControl, type AttemptResult, type FrameworkAdapter } from './framework-adapter.js';

/** Bytes of a response body read for assertions and the log tail. */
const MAX_BODY_BYTES = 1024 * 1024;

/** Reads at most `max` bytes of a body, so a huge response cannot exhaust the worker's memory. */
async function readBounded(response: Response, max: number): Promise<string> {
  if (!response.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= max) break;
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

/** Calls an HTTP endpoint; succeeds when the status is the expected one (any 2xx by default). */
export class HttpAdapter implements FrameworkAdapter {
  readonly framework = 'http';

  async run(task: Task, attempt: AttemptControl): Promise<AttemptResult> {
    const { signal } = attempt;
    const spec = (task.run ?? {}) as { method?: string; url: string; headers?: Record<string, string>; body?: string; expect?: { status?: number; body_contains?: string } };
    const started = Date.now();
    const signals = [signal, ...(task.timeoutMs > 0 ? [AbortSignal.timeout(task.timeoutMs)] : [])];
    try {
      const response = await fetch(spec.url, { method: spec.method ?? 'GET', headers: spec.headers, body: spec.body, signal: AbortSignal.any(signals) });
      const body = await readBounded(response, MAX_BODY_BYTES);
      const statusOk = spec.expect?.status ? response.status === spec.expect.status : response.ok;
      const bodyOk = spec.expect?.body_contains === undefined || body.includes(spec.expect.body_contains);
      const ok = statusOk && bodyOk;
      const evidence = emptyEvidence({ httpStatus: response.status, durationMs: Date.now() - started, logTail: body.slice(-4096) });
      if (!statusOk) evidence.error = `expected status ${spec.expect?.status ?? '2xx'}, got ${response.status}`;
      else if (!bodyOk) evidence.error = `the response body does not contain ${JSON.stringify(spec.expect?.body_contains)}`;
      return { status: ok ? OutcomeStatus.OUTCOME_STATUS_SUCCEEDED : OutcomeStatus.OUTCOME_STATUS_FAILED, evidence, outputs: {} };
    } catch (err) {
      const cancelled = signal.aborted;
      const timedOut = !cancelled && (err as Error).name === 'TimeoutError';
      return {
        status: cancelled ? OutcomeStatus.OUTCOME_STATUS_CANCELLED : timedOut ? OutcomeStatus.OUTCOME_STATUS_TIMED_OUT : OutcomeStatus.OUTCOME_STATUS_FAILED,
        evidence: emptyEvidence({ durationMs: Date.now() - started, error: `${spec.method ?? 'GET'} ${spec.url}: ${(err as Error).message}` }),
        outputs: {},
      };
    }
  }
}
