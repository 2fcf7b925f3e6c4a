import type { Logger } from 'pino';
import { parseDurationMs } from '../common/duration.js';
import { lifecycleEvent } from '../common/event-publisher.js';
import { handleTracedEvent, traceparentOf, TracedComponent, withTraceparent } from '../common/telemetry.js';
import { Severity, StageState, type Event, type Finding, type Pipeline, type Run } from '../common/proto.js';
import type { AuditLog } from './audit-log.js';
import { TEST_FRAMEWORKS } from './check-context.js';

/** Slack allowed past a stage's timeout before the overrun counts: the worker needs a moment to kill a process group. */
const TIMEOUT_GRACE_MS = 2_000;

/**
 * How long a finished run waits for others to be audited with it. The audit
 * reads from the same store the scheduler commits to; reading runs one by
 * one as they finish put a read in front of the next run's commits.
 */
const AUDIT_BATCH_DELAY_MS = 50;

/**
 * Audits a finished run against the pipeline it ran: a stage that declared
 * evidence (outputs, artifacts, a test report) but produced none, or an
 * attempt that ran past its declared timeout. Matrix expansions of a stage
 * (`test[3.11,linux]`) are audited against the stage they come from.
 */
export function auditRun(run: Run, pipeline: Pipeline): Finding[] {
  const findings: Finding[] = [];
  const byId = new Map(pipeline.stages.map((s, index) => [s.id, { stage: s, index }]));
  const declared = (stageId: string) => byId.get(stageId) ?? byId.get(stageId.slice(0, Math.max(0, stageId.indexOf('['))));
  const add = (ruleId: string, stageId: string, fieldPath: string, message: string, fix: string) =>
    findings.push({ ruleId, severity: Severity.SEVERITY_ERROR, stageId, fieldPath, message, fix, runId: run.runId });
  for (const stageRun of run.stages) {
    const found = declared(stageRun.stageId);
    if (!found) continue;
    const { stage, index } = found;
    const timeoutMs = parseDurationMs(stage.timeout || pipeline.defaults?.timeout || '');
    for (const attempt of stageRun.attempts) {
      const durationMs = Number(attempt.evidence?.durationMs ?? 0);
      if (timeoutMs !== undefined && durationMs > timeoutMs + TIMEOUT_GRACE_MS) {
        add('UCL4-audit-timeout-exceeded', stageRun.stageId, `stages[${index}].timeout`, `attempt ${attempt.number} ran ${durationMs} ms, past its timeout of ${timeoutMs} ms`, 'check that the worker stops the whole process group, or raise the timeout');
      }
    }
    if (stageRun.state !== StageState.STAGE_STATE_SUCCEEDED) continue;
    const last = stageRun.attempts[stageRun.attempts.length - 1]?.evidence;
    for (const output of stage.outputs) {
      if (!(output in stageRun.outputs)) add('UCL1-audit-missing-output', stageRun.stageId, `stages[${index}].outputs`, `stage succeeded without writing its declared output "${output}"`, `write "${output}=<value>" to $STAGEMESH_OUTPUT, or remove it from outputs`);
    }
    if ((stage.artifacts ?? []).length > 0 && (last?.artifacts ?? []).length === 0) {
      add('UCL1-audit-missing-artifact', stageRun.stageId, `stages[${index}].artifacts`, 'stage succeeded without producing any of its declared artifacts', 'check the artifact paths against the working directory');
    }
    if (TEST_FRAMEWORKS.has(stage.framework) && !last?.tests?.total) {
      add('UCL1-audit-missing-report', stageRun.stageId, `stages[${index}].run`, 'test stage succeeded without a test report (no test ran)', 'check that the test files or paths match some tests');
    }
  }
  return findings;
}

/**
 * True when a run of `pipeline` can have findings: some stage declares
 * outputs, artifacts or a timeout, or runs a test framework. Runs of other
 * pipelines are recorded clean without being read.
 */
export function mayHaveFindings(pipeline: Pipeline): boolean {
  if (pipeline.defaults?.timeout) return true;
  return pipeline.stages.some((s) => s.timeout || (s.outputs ?? []).length > 0 || (s.artifacts ?? []).length > 0 || TEST_FRAMEWORKS.has(s.framework));
}

/** A finished run with the pipeline it ran (undefined when it cannot be known: nothing is audited then). */
export interface RunToAudit {
  run: Run;
  pipeline?: Pipeline;
}

/** Where the auditor reads finished runs and their pipelines. */
export interface AuditorOptions {
  /**
   * The runs as the scheduler reports them, with their pipelines; ids it does
   * not know are left out. Runs finishing together are asked for in one call.
   */
  getRuns(runIds: string[]): Promise<RunToAudit[]>;
  /**
   * The pipelines of runs, by run id: cheaper than getRuns when the runs
   * live in a shared store. With it, only runs whose pipeline may have
   * findings (mayHaveFindings) are read. @default undefined
   */
  pipelinesOf?(runIds: string[]): Promise<Map<string, Pipeline>>;
  log: AuditLog;
  /** Publishes `compliance.violation` events, one per finding. @default undefined */
  publish?: (events: Event[]) => void;
  logger: Logger;
}

/** The runtime auditor: feed it lifecycle events; it audits each run when `run.finished` arrives. */
export interface Auditor {
  onEvent(event: Event): void;
  /** Resolves when every audit started so far has ended (for orderly shutdown and tests). */
  settled(): Promise<void>;
}

/**
 * Creates the runtime auditor. It ignores every event but `run.finished`;
 * for that one it fetches the run and its pipeline, records the findings in
 * the audit log (read by Audit) and publishes one `compliance.violation`
 * event per finding. Audits never throw: failures are logged.
 */
export function createAuditor(options: AuditorOptions): Auditor {
  const pending = new Set<Promise<void>>();
  // Runs finishing within AUDIT_BATCH_DELAY_MS of each other are fetched together.
  let batch: { runId: string; resolve: (found: RunToAudit | 'clean' | undefined) => void; reject: (err: unknown) => void }[] = [];
  const fetchBatch = async (taken: typeof batch) => {
    let ids = taken.map((t) => t.runId);
    const clean = new Set<string>();
    if (options.pipelinesOf) {
      const pipelines = await options.pipelinesOf(ids);
      for (const id of ids) {
        const pipeline = pipelines.get(id);
        if (pipeline && !mayHaveFindings(pipeline)) clean.add(id);
      }
      ids = ids.filter((id) => !clean.has(id));
    }
    const found = ids.length > 0 ? await options.getRuns(ids) : [];
    const byId = new Map(found.map((f) => [f.run.runId, f]));
    for (const t of taken) t.resolve(clean.has(t.runId) ? 'clean' : byId.get(t.runId));
  };
  const fetchRun = (runId: string) =>
    new Promise<RunToAudit | 'clean' | undefined>((resolve, reject) => {
      if (batch.push({ runId, resolve, reject }) === 1) {
        setTimeout(() => {
          const taken = batch;
          batch = [];
          fetchBatch(taken).catch((err: unknown) => taken.forEach((t) => t.reject(err)));
        }, AUDIT_BATCH_DELAY_MS);
      }
    });
  const audit = async (runId: string) => {
    const found = await fetchRun(runId);
    if (found === 'clean') {
      options.log.record(runId, []);
      return;
    }
    if (!found) throw new Error(`run ${runId} is unknown to the scheduler`);
    const { run, pipeline } = found;
    if (!pipeline) return;
    const findings = auditRun(run, pipeline);
    options.log.record(runId, findings);
    if (findings.length > 0) {
      options.publish?.(
        findings.map((f) =>
          withTraceparent(
            lifecycleEvent('compliance.violation', 'stagemesh/compliance', `run/${runId}/stage/${f.stageId}`, { run_id: runId, pipeline: run.pipelineName, stage_id: f.stageId }, { rule_id: f.ruleId, field_path: f.fieldPath, message: f.message, fix: f.fix }),
            // Violations continue the run's trace from the audit span.
            traceparentOf(),
          ),
        ),
      );
    }
  };
  return {
    onEvent(event) {
      const runId = event.attributes.run_id;
      if (event.type !== 'run.finished' || !runId) return;
      const job = handleTracedEvent(TracedComponent.COMPLIANCE, 'audit run', event, () => audit(runId))
        .catch((err: unknown) => options.logger.warn({ err, runId }, 'runtime audit of a run failed'))
        .finally(() => pending.delete(job));
      pending.add(job);
    },
    async settled() {
      await Promise.allSettled([...pending]);
    },
  };
}
