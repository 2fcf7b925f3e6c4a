import { danglingNeeds, duplicateStageIds, findCycle, When } from '../common/dag.js';
import type { Pipeline } from '../common/proto.js';
import { forEachMatch, PROCESS_FRAMEWORKS, runOf, type CheckContext, type RawFinding } from './check-context.js';
import { findSecret, unicodeProblems } from './integrity.js';

const raw = (ruleId: string, fieldPath: string, message: string, fix: string, stageId = ''): RawFinding => ({ ruleId, fieldPath, message, fix, stageId });

/** UCL2 (Precedence): unique stage ids, no dangling `needs`, no cycle. */
export function precedenceFindings(pipeline: Pipeline): RawFinding[] {
  const findings: RawFinding[] = [];
  for (const { index, id } of duplicateStageIds(pipeline.stages)) {
    findings.push(raw('UCL2-duplicate-id', `stages[${index}].id`, `stage id "${id}" is used more than once`, 'give every stage its own id', id));
  }
  for (const { index, needIndex, need } of danglingNeeds(pipeline.stages)) {
    const id = pipeline.stages[index]!.id;
    findings.push(raw('UCL2-dangling-need', `stages[${index}].needs[${needIndex}]`, `stage "${id}" needs "${need}", which is not a stage of this pipeline`, `remove "${need}" from needs or add a stage with that id`, id));
  }
  const cycle = findCycle(pipeline.stages);
  if (cycle) {
    const index = pipeline.stages.findIndex((s) => s.id === cycle[0]);
    findings.push(raw('UCL2-cycle', `stages[${index}].needs`, `dependency cycle: ${cycle.join(' → ')}`, `break the cycle by removing one of the needs between ${[...new Set(cycle)].join(', ')}`, cycle[0]));
  }
  return findings;
}

/** A command whose last step swallows its status: `|| true`, `|| :`, `; exit 0`; or `set +e`. */
const MASKED_EXIT = /(?:(?:\|\||;|&&)\s*(?:true|:|exit\s+0)\s*;?\s*$)|(?:(?:^|[;&|\n])\s*set\s+\+e\b)/;
/** `image:latest`, `package@latest`. */
const LATEST = /(?:[A-Za-z0-9._/-]+:latest|@latest)\b/;
/** `$NAME` and `${NAME}` (not `${{ … }}` expressions). */
const VARIABLE = /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[}:#%/-]|([A-Za-z_][A-Za-z0-9_]*))/g;
/** Names a command gives a value itself: `NAME=…`, `for NAME in`, `read NAME`, `export NAME=`. */
const ASSIGNED = /(?:^|[\s;&|(])(?:(?:export|local|readonly)\s+)?([A-Za-z_][A-Za-z0-9_]*)=|\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b|\bread\s+(?:-\w+\s+)*([A-Za-z_][A-Za-z0-9_]*)/g;
/** Variables every POSIX shell or the worker provides. */
const STANDARD_VARIABLES = new Set(['HOME', 'PATH', 'PWD', 'OLDPWD', 'USER', 'LOGNAME', 'SHELL', 'TMPDIR', 'LANG', 'LC_ALL', 'TERM', 'HOSTNAME', 'IFS', 'RANDOM', 'LINENO', 'SECONDS', 'UID', 'PPID', 'CI']);

function undeclaredVariables(command: string, env: Readonly<Record<string, unknown>>): string[] {
  if (!command.includes('$')) return [];
  const assigned = new Set<string>();
  forEachMatch(ASSIGNED, command, (m) => assigned.add((m[1] ?? m[2] ?? m[3])!));
  const missing = new Set<string>();
  forEachMatch(VARIABLE, command, (m) => {
    const name = (m[1] ?? m[2])!;
    if (!(name in env) && !assigned.has(name) && !STANDARD_VARIABLES.has(name) && !name.startsWith('STAGEMESH_')) missing.add(name);
  });
  return [...missing];
}

/** UCL1 (Verifiability): success is judged by something that can fail. */
export function verifiabilityRules(ctx: CheckContext): void {
  ctx.pipeline.stages.forEach((stage, index) => {
    const run = runOf(stage);
    if (stage.framework === 'shell' && typeof run.command === 'string' && MASKED_EXIT.test(run.command)) {
      ctx.emit(raw('UCL1-masked-exit', `stages[${index}].run.command`, `the command of "${stage.id}" hides its exit status, so the stage cannot fail`, 'remove "|| true" / "exit 0" / "set +e", or handle the failure in an on_failure stage', stage.id));
    }
    if (stage.framework === 'http' && run.expect === undefined) {
      ctx.emit(raw('UCL1-http-expect', `stages[${index}].run.expect`, `http stage "${stage.id}" does not say which status means success (any 2xx passes)`, 'add run.expect.status (and body_contains if the body matters)', stage.id));
    }
  });
}

/** UCL2 (Precedence) beyond the graph structure: stages that can never run, repeated needs. */
export function precedenceRules(ctx: CheckContext): void {
  for (const f of ctx.structural) ctx.emit(f);
  ctx.pipeline.stages.forEach((stage, index) => {
    if (stage.when === When.ON_FAILURE && stage.needs.length === 0) {
      ctx.emit(raw('UCL2-never-runs', `stages[${index}].when`, `stage "${stage.id}" runs on_failure but needs no stage, so nothing can fail before it`, 'add the stages it reacts to under needs', stage.id));
    }
    const seen = new Set<string>();
    stage.needs.forEach((need, needIndex) => {
      if (seen.has(need)) ctx.emit(raw('UCL2-duplicate-need', `stages[${index}].needs[${needIndex}]`, `stage "${stage.id}" lists "${need}" twice`, `remove the second "${need}"`, stage.id));
      seen.add(need);
    });
  });
}

/** UCL3 (Provenance): owner, version and source; no orphan stage. */
export function provenanceRules(ctx: CheckContext): void {
  const { pipeline } = ctx;
  if (!pipeline.owner.trim()) ctx.emit(raw('UCL3-owner', 'owner', 'the pipeline names no owner', 'add owner: <team or person to ask>'));
  if (!pipeline.version.trim()) ctx.emit(raw('UCL3-version', 'version', 'the pipeline carries no version', 'add version: "1" and raise it on every change'));
  if (!pipeline.source.trim()) ctx.emit(raw('UCL3-source', 'source', 'the pipeline does not say where its definition lives', 'add source: <repository URL and path>'));
  for (const index of ctx.shape?.isolated ?? []) {
    const id = pipeline.stages[index]!.id;
    ctx.emit(raw('UCL3-orphan-stage', `stages[${index}]`, `stage "${id}" neither needs nor is needed by any other stage`, `connect "${id}" with needs, or move it to a pipeline of its own`, id));
  }
}

/** UCL4 (Reproducibility): pinned versions, bounded waits, declared environment. */
export function reproducibilityRules(ctx: CheckContext): void {
  const { pipeline } = ctx;
  for (const field of ctx.text) {
    // The cheap test first: the pattern scans every position of long commands.
    if (field.identifier || !field.text.includes('latest') || (!field.fieldPath.includes('.run') && !field.fieldPath.includes('.matrix'))) continue;
    const latest = LATEST.exec(field.text);
    if (latest) ctx.emit(raw('UCL4-unpinned', field.fieldPath, `"${latest[0]}" changes under the pipeline's feet`, 'pin an exact version or digest instead of latest', field.stageId));
  }
  pipeline.stages.forEach((stage, index) => {
    const run = runOf(stage);
    if (stage.framework === 'wait-event' && !stage.timeout && !pipeline.defaults?.timeout) {
      ctx.emit(raw('UCL4-unbounded-wait', `stages[${index}].timeout`, `stage "${stage.id}" may wait for its event forever`, 'add timeout: (such as 1h) to the stage or to defaults', stage.id));
    }
    if (PROCESS_FRAMEWORKS.has(stage.framework) && typeof run.command === 'string') {
      const env = (run.env ?? {}) as Record<string, unknown>;
      for (const name of undeclaredVariables(run.command, env)) {
        ctx.emit(raw('UCL4-undeclared-env', `stages[${index}].run.command`, `the command reads $${name}, which the stage does not declare, so it depends on the worker's environment`, `declare ${name} under run.env (a value or \${{ inputs.… }})`, stage.id));
      }
    }
  });
}

/** UCL5 (Integrity): no secrets, no Trojan Source characters, limits respected. */
export function integrityRules(ctx: CheckContext): void {
  for (const field of ctx.text) {
    if (!field.text) continue;
    for (const problem of unicodeProblems(field.text)) {
      if (problem.kind === 'bidi') ctx.emit(raw('UCL5-bidi', field.fieldPath, `contains the bidirectional control ${problem.codePoint}, which can make the text read differently from what runs (Trojan Source)`, 'delete the control character; write right-to-left text without overrides', field.stageId));
      else if (problem.kind === 'invisible') ctx.emit(raw('UCL5-invisible', field.fieldPath, `contains the invisible character ${problem.codePoint}`, 'delete the invisible character', field.stageId));
      else ctx.emit(raw('UCL5-non-nfc', field.fieldPath, 'is not in Unicode normal form C, so equal-looking text compares different', 'save the text normalised to NFC', field.stageId));
    }
    if (field.identifier) continue;
    const secret = findSecret(field.text, field.key, field.prose);
    if (secret) ctx.emit(raw('UCL5-secret', field.fieldPath, `holds ${secret} in plain text`, 'pass the secret at run time (an input or the worker environment) and rotate the one written here', field.stageId));
  }
  const { maxStages } = ctx.policy.limits;
  if (ctx.pipeline.stages.length > maxStages) {
    ctx.emit(raw('UCL5-limits', 'stages', `${ctx.pipeline.stages.length} stages, over the policy limit of ${maxStages}`, 'split the pipeline', ''));
  }
}
