import { createHash } from 'node:crypto';
import type { Logger } from '../common/logger.js';
import { unary } from '../common/handlers.js';
import { InvalidArgumentError } from '../common/errors.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import { ComplianceService as ComplianceDefinition, SERVICE_NAMES, type ComplianceServer, type Pipeline, type Policy, type Report, type ValidateRequest } from '../common/proto.js';
import type { AuditLog } from './audit-log.js';
import { PolicyError } from './errors.js';
import { DEFAULT_POLICY, Enforcement, policyFromMessage, policyToMessage, resolvePolicy, type ResolvedPolicy } from './policy.js';
import { validatePipeline } from './rules.js';

/**
 * The policy the service starts with when given none: the default policy
 * (threshold 0.90, default weights) in `audit` mode, so the admission gate
 * enforces the laws and reports the score without refusing on it until an
 * operator sets `enforcement: enforce` (see docs/compliance.md).
 */
export const SERVICE_START_POLICY: ResolvedPolicy = resolvePolicy({ ...policyDataOf(DEFAULT_POLICY), enforcement: Enforcement.AUDIT });

function policyDataOf(policy: ResolvedPolicy): Record<string, unknown> {
  return { threshold: policy.threshold, enforcement: policy.enforcement, weights: { ...policy.weights } };
}

/** Validation reports Compliance keeps for pipelines validated again. */
const MAX_REMEMBERED_REPORTS = 256;

/** How long the frameworks of the cluster are reused between validations. */
const FRAMEWORKS_TTL_MS = 1_000;

/** Options of the compliance service. */
export interface ComplianceServiceOptions {
  /** The policy in force until SetPolicy replaces it (kept in memory). @default SERVICE_START_POLICY */
  policy?: ResolvedPolicy;
  /**
   * Frameworks the workers of the cluster offer, for COF10 (Spatial); asked
   * at most once a second. When it fails, answers an empty list (no worker
   * yet) or is absent, every framework counts as available. @default undefined
   */
  availableFrameworks?: () => Promise<readonly string[]>;
  /** Where runtime audit findings are kept for Audit; without it Audit answers with no findings. @default undefined */
  auditLog?: AuditLog;
}

/** Reads a wire policy, turning a PolicyError into INVALID_ARGUMENT under `fieldPrefix`. */
function readPolicy(message: Policy, fieldPrefix: string): ResolvedPolicy {
  try {
    return policyFromMessage(message);
  } catch (err) {
    if (err instanceof PolicyError) throw new InvalidArgumentError(err.reason, `${fieldPrefix}.${err.fieldPath}`, { cause: err });
    throw err;
  }
}

/**
 * What the compliance service decides, callable in process as well as over
 * gRPC (the embedded mesh validates each run's pipeline without a round trip):
 * the policy in force and the validation of pipelines against it.
 */
export class Compliance {
  #policy: ResolvedPolicy;
  /** The frameworks of the cluster, asked at most once a second (the set changes only when workers join or leave). */
  #known?: { at: number; frameworks: Promise<readonly string[] | undefined> };
  /**
   * Reports of the pipelines validated lately under the policy in force, by
   * content (MAX_REMEMBERED_REPORTS at most, the least recently used go
   * first): every run of a pipeline is admitted with the same definition, and
   * a report depends only on the pipeline, the policy and the frameworks of
   * the cluster, so it is computed again only when one of them changed.
   */
  readonly #reports = new Map<string, { policy: ResolvedPolicy; frameworks: string; report: Report }>();
  /** The content key of each pipeline message seen (a registered version is one object, so hashed once; messages are not changed once validated). */
  readonly #keys = new WeakMap<Pipeline, string>();

  constructor(
    private readonly logger: Logger,
    readonly options: ComplianceServiceOptions = {},
  ) {
    this.#policy = options.policy ?? SERVICE_START_POLICY;
  }

  get policy(): ResolvedPolicy {
    return this.#policy;
  }

  /** Replaces the policy in force (in memory: a restart goes back to `options.policy`). */
  setPolicy(policy: ResolvedPolicy): void {
    this.#policy = policy;
    this.logger.info({ threshold: policy.threshold, enforcement: policy.enforcement, customRules: policy.customRules.length }, 'compliance policy replaced');
  }

  /** Scores a pipeline against the policy in force, or the one the request carries. @throws InvalidArgumentError */
  async validate(request: ValidateRequest): Promise<Report> {
    if (request.document === undefined && !request.pipeline) {
      throw new InvalidArgumentError('a pipeline or a document is required', 'definition');
    }
    const policy = request.policy ? readPolicy(request.policy, 'policy') : this.#policy;
    const availableFrameworks = await this.#frameworks();
    const { pipeline } = request;
    if (request.policy || !pipeline || request.document !== undefined) return validatePipeline(request, { policy, availableFrameworks });
    const frameworks = availableFrameworks?.join(',') ?? '*';
    const key = this.#keyOf(pipeline);
    const last = this.#reports.get(key);
    this.#reports.delete(key);
    if (last && last.policy === policy && last.frameworks === frameworks) {
      this.#reports.set(key, last);
      return last.report;
    }
    const report = validatePipeline(request, { policy, availableFrameworks });
    this.#reports.set(key, { policy, frameworks, report });
    if (this.#reports.size > MAX_REMEMBERED_REPORTS) this.#reports.delete(this.#reports.keys().next().value!);
    return report;
  }

  #keyOf(pipeline: Pipeline): string {
    let key = this.#keys.get(pipeline);
    if (key === undefined) {
      key = createHash('sha256').update(JSON.stringify(pipeline)).digest('base64');
      this.#keys.set(pipeline, key);
    }
    return key;
  }

  #frameworks(): Promise<readonly string[] | undefined> {
    const source = this.options.availableFrameworks;
    if (!source) return Promise.resolve(undefined);
    if (this.#known && Date.now() - this.#known.at < FRAMEWORKS_TTL_MS) return this.#known.frameworks;
    const fetched = source().then(
      // No worker connected yet (a mesh starting) says nothing about placement.
      (list) => (list.length > 0 ? list : undefined),
      (err: unknown) => {
        this.logger.warn({ err }, 'cannot list the frameworks of the cluster; scoring COF10 as if every framework were available');
        return undefined;
      },
    );
    this.#known = { at: Date.now(), frameworks: fetched };
    return fetched;
  }
}

/**
 * The compliance service: Validate scores a pipeline against the policy in
 * force (or one sent with the request), GetPolicy/SetPolicy read and replace
 * that policy (in memory: a restart goes back to `options.policy`), Audit
 * lists the runtime findings of a run.
 */
export function createComplianceService(logger: Logger, compliance: Compliance | ComplianceServiceOptions = {}): ServiceRegistration {
  const engine = compliance instanceof Compliance ? compliance : new Compliance(logger, compliance);
  const implementation: Partial<ComplianceServer> = {
    validate: unary(logger, async (request: ValidateRequest) => ({ report: await engine.validate(request) })),
    getPolicy: unary(logger, async () => ({ policy: policyToMessage(engine.policy) })),
    setPolicy: unary(logger, async (request) => {
      if (!request.policy) throw new InvalidArgumentError('a policy is required', 'policy');
      engine.setPolicy(readPolicy(request.policy, 'policy'));
      return { policy: policyToMessage(engine.policy) };
    }),
    audit: unary(logger, async (request) => {
      if (!request.runId) throw new InvalidArgumentError('a run id is required', 'run_id');
      return { findings: engine.options.auditLog?.findings(request.runId) ?? [] };
    }),
  };
  return { name: SERVICE_NAMES.compliance, definition: ComplianceDefinition, implementation };
}
