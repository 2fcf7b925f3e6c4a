import { When } from '../common/dag.js';
import type { Stage } from '../common/proto.js';
import { forEachMatch, OUTPUT_EXPRESSION, PROCESS_FRAMEWORKS, runOf, TEST_FRAMEWORKS, type CheckContext } from './check-context.js';
import type { DimensionId } from './rule-catalog.js';

/** Share of the stages passing `applies` that satisfy `ok` (1 when none applies), with one finding per miss. */
function stageShare(ctx: CheckContext, applies: (s: Stage) => boolean, ok: (s: Stage) => boolean, onMiss: (s: Stage, index: number) => void): number {
  const { stages } = ctx.pipeline;
  let subjects = 0;
  let hits = 0;
  for (let index = 0; index < stages.length; index++) {
    const stage = stages[index]!;
    if (!applies(stage)) continue;
    subjects++;
    if (ok(stage)) hits++;
    else onMiss(stage, index);
  }
  return subjects === 0 ? 1 : hits / subjects;
}

const all = () => true;
const emitFor = (ctx: CheckContext, ruleId: string, field: string, message: (s: Stage) => string, fix: string) => (stage: Stage, index: number) =>
  ctx.emit({ ruleId, fieldPath: `stages[${index}]${field}`, message: message(stage), fix, stageId: stage.id });

/** Scores each COF dimension 0..1 and emits the findings that explain a score below 1. */
export const DIMENSION_SCORERS: Record<DimensionId, (ctx: CheckContext) => number> = {
  COF01(ctx) {
    if (ctx.pipeline.description.trim()) return 1;
    ctx.emit({ ruleId: 'COF01-description', fieldPath: 'description', message: 'the pipeline does not say what it is for', fix: 'add description: <why it exists and when it runs>', stageId: '' });
    return 0;
  },
  COF02(ctx) {
    if (!ctx.shape) return 0;
    const needs = ctx.pipeline.stages.reduce((n, s) => n + s.needs.length, 0);
    for (const { index, needIndex } of ctx.shape.redundantNeeds) {
      const stage = ctx.pipeline.stages[index]!;
      const need = stage.needs[needIndex]!;
      ctx.emit({ ruleId: 'COF02-redundant-need', fieldPath: `stages[${index}].needs[${needIndex}]`, message: `"${need}" already runs before "${stage.id}" through another of its needs`, fix: `remove "${need}" from needs`, stageId: stage.id });
    }
    return needs === 0 ? 1 : 1 - ctx.shape.redundantNeeds.length / needs;
  },
  COF03(ctx) {
    const labels = Object.keys(ctx.pipeline.labels).length > 0 ? 1 : 0;
    if (!labels) ctx.emit({ ruleId: 'COF03-labels', fieldPath: 'labels', message: 'the pipeline carries no labels', fix: 'add labels such as team, service or environment', stageId: '' });
    const environment = stageShare(
      ctx,
      (s) => PROCESS_FRAMEWORKS.has(s.framework),
      (stage) => runOf(stage).env !== undefined || runOf(stage).cwd !== undefined,
      emitFor(ctx, 'COF03-environment', '.run', (s) => `stage "${s.id}" runs in whatever directory and environment the worker has`, 'declare run.cwd and/or run.env'),
    );
    return (labels + environment) / 2;
  },
  COF04: (ctx) =>
    stageShare(
      ctx,
      (s) => PROCESS_FRAMEWORKS.has(s.framework),
      (stage) => Object.keys(stage.resources).length > 0,
      emitFor(ctx, 'COF04-resources', '.resources', (s) => `stage "${s.id}" gives no resource hints`, 'add resources such as { cpu: "1", memory: 512Mi }'),
    ),
  COF05: (ctx) =>
    stageShare(ctx, all, (stage) => stage.description.trim() !== '', emitFor(ctx, 'COF05-stage-description', '.description', (s) => `stage "${s.id}" does not say what it does`, 'add a one-line description')),
  COF06: (ctx) =>
    stageShare(
      ctx,
      (s) => PROCESS_FRAMEWORKS.has(s.framework) || s.framework === 'http',
      (stage) => stage.retry !== undefined || ctx.pipeline.defaults?.retry !== undefined,
      emitFor(ctx, 'COF06-retry', '.retry', (s) => `stage "${s.id}" declares no retry policy`, 'add retry: { max_attempts: 2, backoff: 1s } to the stage or to defaults (max_attempts: 1 states "never retry")'),
    ),
  COF07(ctx) {
    if (!ctx.shape) return 0;
    const { limits } = ctx.policy;
    const { shape, pipeline } = ctx;
    let within = 4;
    const over = (ruleId: string, fieldPath: string, message: string, fix: string, stageId = '') => {
      within--;
      ctx.emit({ ruleId, fieldPath, message, fix, stageId });
    };
    if (shape.depth > limits.maxDepth) over('COF07-depth', 'stages', `the longest chain of needs has ${shape.depth} stages, over ${limits.maxDepth}`, 'run independent steps side by side, or merge small sequential steps');
    if (shape.width > limits.maxWidth) over('COF07-width', 'stages', `${shape.width} stages can run at once on one level, over ${limits.maxWidth}`, 'group the stages, or use a matrix');
    const fanOut = Math.max(0, ...shape.fanOut);
    if (fanOut > limits.maxFanOut) {
      const index = shape.fanOut.indexOf(fanOut);
      over('COF07-fan-out', `stages[${index}]`, `${fanOut} stages need "${pipeline.stages[index]!.id}", over ${limits.maxFanOut}`, 'put an intermediate stage between them', pipeline.stages[index]!.id);
    }
    const fanIn = Math.max(0, ...pipeline.stages.map((s) => s.needs.length));
    if (fanIn > limits.maxFanIn) {
      const index = pipeline.stages.findIndex((s) => s.needs.length === fanIn);
      over('COF07-fan-in', `stages[${index}].needs`, `stage "${pipeline.stages[index]!.id}" needs ${fanIn} stages, over ${limits.maxFanIn}`, 'join them through an intermediate stage', pipeline.stages[index]!.id);
    }
    return within / 4;
  },
  COF08(ctx) {
    const { stages } = ctx.pipeline;
    if (stages.length < 2 || stages.some((s) => s.when === When.ALWAYS || s.when === When.ON_FAILURE)) return 1;
    ctx.emit({ ruleId: 'COF08-failure-handling', fieldPath: 'stages', message: 'no stage reacts to a failure (when: on_failure or always)', fix: 'add a stage with when: on_failure (alert, roll back) or when: always (report, clean up)', stageId: '' });
    return 0;
  },
  COF09: (ctx) =>
    stageShare(
      ctx,
      (s) => PROCESS_FRAMEWORKS.has(s.framework) || s.framework === 'http' || s.framework === 'wait-event',
      (stage) => stage.timeout !== '' || Boolean(ctx.pipeline.defaults?.timeout),
      (stage, index) => {
        // A wait-event stage without timeout is already UCL4-unbounded-wait; one finding is enough.
        if (stage.framework !== 'wait-event') ctx.emit({ ruleId: 'COF09-timeout', fieldPath: `stages[${index}].timeout`, message: `stage "${stage.id}" has no timeout: a hung ${stage.framework} stage holds its worker until the run's deadline`, fix: 'add timeout: (such as 5m) to the stage, or defaults.timeout', stageId: stage.id });
      },
    ),
  COF10: (ctx) =>
    stageShare(
      ctx,
      all,
      (stage) => ctx.availableFrameworks.has(stage.framework),
      emitFor(ctx, 'COF10-framework-unavailable', '.framework', (s) => `no worker of the cluster offers framework "${s.framework}", so stage "${s.id}" would wait in its queue`, 'start a worker that offers the framework, or use another framework'),
    ),
  COF11(ctx) {
    // Outputs read anywhere, by stage: `${{ stages.build.outputs.version }}` adds version under build.
    const read = new Map<string, Set<string>>();
    for (const field of ctx.text) {
      if (!field.text.includes('${{')) continue;
      forEachMatch(OUTPUT_EXPRESSION, field.text, (m) => {
        const outputs = read.get(m[1]!);
        if (outputs) outputs.add(m[2]!);
        else read.set(m[1]!, new Set([m[2]!]));
      });
    }
    const { stages } = ctx.pipeline;
    const needed = new Set<string>();
    for (const stage of stages) for (const need of stage.needs) needed.add(need);
    // Outputs of a stage nothing needs are the run's results (shown with the run); only intermediate outputs must be read.
    let declared = 0;
    let used = 0;
    stages.forEach((stage, index) => {
      if (stage.outputs.length === 0 || !needed.has(stage.id)) return;
      const outputs = read.get(stage.id);
      stage.outputs.forEach((output, outputIndex) => {
        declared++;
        if (outputs?.has(output)) used++;
        else ctx.emit({ ruleId: 'COF11-unused-output', fieldPath: `stages[${index}].outputs[${outputIndex}]`, message: `output "${output}" of "${stage.id}" is never read by a later stage`, fix: `read it with \${{ stages.${stage.id}.outputs.${output} }} or remove it`, stageId: stage.id });
      });
    });
    return declared === 0 ? 1 : used / declared;
  },
  COF12: (ctx) =>
    stageShare(
      ctx,
      (s) => s.framework !== 'noop' && s.framework !== 'sleep',
      (stage) => {
        if (TEST_FRAMEWORKS.has(stage.framework) || stage.framework === 'wait-event') return true;
        if (stage.framework === 'http') return runOf(stage).expect !== undefined;
        return stage.outputs.length > 0 || (stage.artifacts ?? []).length > 0;
      },
      emitFor(ctx, 'COF12-evidence', '', (s) => `stage "${s.id}" declares no evidence beyond its ${s.framework === 'http' ? 'default status check' : 'exit code'}`, 'declare outputs or artifacts (shell), run.expect (http), or run the tests with a test framework'),
    ),
  COF13(ctx) {
    const integrates = ctx.pipeline.stages.some((s) => s.framework === 'wait-event' || (s.framework === 'http' && ['POST', 'PUT', 'PATCH'].includes(String(runOf(s).method ?? 'GET'))));
    if (integrates) return 1;
    ctx.emit({ ruleId: 'COF13-integration', fieldPath: 'stages', message: 'the pipeline neither waits for an event nor notifies anything', fix: 'add a wait-event stage, or an http stage that POSTs to a webhook (when: always)', stageId: '' });
    return 0;
  },
};
