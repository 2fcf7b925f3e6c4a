/**
 * Pure DAG logic over stages: structure checks (used by compliance) and the
 * step function the scheduler advances runs with.
 */

/** Stage states the DAG reasons about (the wire enum without its prefix). */
export const StageStatus = {
  PENDING: 'PENDING',
  QUEUED: 'QUEUED',
  RUNNING: 'RUNNING',
  SUCCEEDED: 'SUCCEEDED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
  SKIPPED: 'SKIPPED',
} as const;
export type StageStatus = (typeof StageStatus)[keyof typeof StageStatus];

/** When a stage runs, relative to the stages it needs. */
export const When = { ON_SUCCESS: 'on_success', ALWAYS: 'always', ON_FAILURE: 'on_failure' } as const;
export type When = (typeof When)[keyof typeof When];

export interface DagStage {
  id: string;
  needs: readonly string[];
  /** @default "on_success" */
  when?: string;
}

const TERMINAL: ReadonlySet<StageStatus> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED']);

/** True when a stage in this state will not change any more. */
export function isTerminal(status: StageStatus): boolean {
  return TERMINAL.has(status);
}

/** Indexes of stages whose id was already used by an earlier stage. */
export function duplicateStageIds(stages: readonly DagStage[]): { index: number; id: string }[] {
  const seen = new Set<string>();
  const duplicates: { index: number; id: string }[] = [];
  stages.forEach((stage, index) => {
    if (seen.has(stage.id)) duplicates.push({ index, id: stage.id });
    seen.add(stage.id);
  });
  return duplicates;
}

/** Every `needs` entry naming no stage of the pipeline, with where it stands. */
export function danglingNeeds(stages: readonly DagStage[]): { index: number; needIndex: number; need: string }[] {
  const ids = new Set(stages.map((s) => s.id));
  return stages.flatMap((stage, index) =>
    stage.needs.flatMap((need, needIndex) => (ids.has(need) ? [] : [{ index, needIndex, need }])),
  );
}

/**
 * Finds one dependency cycle and returns it as a closed path of stage ids
 * (`["a", "b", "c", "a"]`), or undefined when the graph is acyclic. A stage
 * that needs itself is a cycle of one. Dangling needs are ignored.
 */
export function findCycle(stages: readonly DagStage[]): string[] | undefined {
  const needs = new Map<string, readonly string[]>();
  for (const stage of stages) if (!needs.has(stage.id)) needs.set(stage.id, stage.needs);
  const color = new Map<string, 'grey' | 'black'>();
  const path: string[] = [];
  // Iterative depth-first search, so a 10,000-stage chain cannot overflow the stack.
  for (const start of needs.keys()) {
    if (color.has(start)) continue;
    const stack: { id: string; next: number }[] = [{ id: start, next: 0 }];
    color.set(start, 'grey');
    path.push(start);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const deps = needs.get(top.id) ?? [];
      if (top.next < deps.length) {
        const dep = deps[top.next++]!;
        if (!needs.has(dep)) continue;
        const c = color.get(dep);
        if (c === 'grey') return [...path.slice(path.indexOf(dep)), dep];
        if (c === undefined) {
          color.set(dep, 'grey');
          path.push(dep);
          stack.push({ id: dep, next: 0 });
        }
      } else {
        color.set(top.id, 'black');
        path.pop();
        stack.pop();
      }
    }
  }
  return undefined;
}

/** What the scheduler must do next: stages to dispatch now and stages to skip. */
export interface DagStep {
  start: string[];
  skip: string[];
}

/** Looks up a stage's state by id (a Map of them will do); undefined for an id the run does not have. */
export interface DagStates {
  get(id: string): StageStatus | undefined;
}

/** The stages that need each stage, in pipeline order. */
export function dependentsOf(stages: readonly DagStage[]): Map<string, DagStage[]> {
  const dependents = new Map<string, DagStage[]>();
  for (const stage of stages) {
    for (const need of stage.needs) {
      const list = dependents.get(need);
      if (list) list.push(stage);
      else dependents.set(need, [stage]);
    }
  }
  return dependents;
}

/** Where nextStep looks: only these stages, and the dependents of those it skips. */
export interface DagCandidates {
  candidates: Iterable<DagStage>;
  /** dependentsOf(stages), kept by the caller so a step does not rebuild it. */
  dependents: ReadonlyMap<string, readonly DagStage[]>;
}

/**
 * Decides which pending stages can start, given the current states. A stage
 * waits until everything it needs is terminal; then `on_success` stages start
 * only if all of them succeeded, `on_failure` stages only if one failed, and
 * `always` stages start regardless. Skips cascade to dependents.
 *
 * Without `from` every stage is considered. A step after some stages ended
 * need only consider their dependents (`from`), which keeps the work of a
 * step proportional to what changed instead of to the size of the run.
 */
export function nextStep(stages: readonly DagStage[], states: DagStates, from?: DagCandidates): DagStep {
  const decided = new Map<string, StageStatus>();
  const stateOf = (id: string) => decided.get(id) ?? states.get(id);
  let dependents = from?.dependents;
  const step: DagStep = { start: [], skip: [] };
  const queue = [...(from?.candidates ?? stages)];
  for (let i = 0; i < queue.length; i++) {
    const stage = queue[i]!;
    if (stateOf(stage.id) !== 'PENDING') continue;
    const needStates = stage.needs.map((n) => stateOf(n) ?? 'SUCCEEDED');
    if (!needStates.every(isTerminal)) continue;
    const when = (stage.when || When.ON_SUCCESS) as When;
    const run =
      when === When.ALWAYS
        ? true
        : when === When.ON_FAILURE
          ? needStates.some((s) => s === 'FAILED')
          : needStates.every((s) => s === 'SUCCEEDED');
    if (run) {
      step.start.push(stage.id);
      decided.set(stage.id, 'QUEUED');
    } else {
      step.skip.push(stage.id);
      decided.set(stage.id, 'SKIPPED');
      dependents ??= dependentsOf(stages);
      queue.push(...(dependents.get(stage.id) ?? []));
    }
  }
  return step;
}

/** The run's state derived from its stages: RUNNING until all are terminal, then FAILED if any failed. */
export function runStatus(states: Iterable<StageStatus>): 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' {
  let failed = false;
  let cancelled = false;
  for (const s of states) {
    if (!isTerminal(s)) return 'RUNNING';
    if (s === 'FAILED') failed = true;
    if (s === 'CANCELLED') cancelled = true;
  }
  return failed ? 'FAILED' : cancelled ? 'CANCELLED' : 'SUCCEEDED';
}
