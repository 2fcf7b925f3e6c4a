import type { Logger } from '../common/logger.js';
import { unary } from '../common/handlers.js';
import { InvalidArgumentError } from '../common/errors.js';
import type { ServiceRegistration } from '../common/grpc-server.js';
import { ComplianceService as ComplianceDefinition, SERVICE_NAMES, type ComplianceServer, type ValidateRequest } from '../common/proto.js';
import { DEFAULT_THRESHOLD, validatePipeline } from './rules.js';

/**
 * The compliance service: validates and scores pipelines before they run.
 * SetPolicy and Audit answer UNIMPLEMENTED in this release.
 */
export function createComplianceService(logger: Logger): ServiceRegistration {
  const implementation: Partial<ComplianceServer> = {
    validate: unary(logger, async (request: ValidateRequest) => {
      if (request.document === undefined && !request.pipeline) {
        throw new InvalidArgumentError('a pipeline or a document is required', 'definition');
      }
      return { report: validatePipeline(request) };
    }),
    getPolicy: unary(logger, async () => ({
      policy: { threshold: DEFAULT_THRESHOLD, weights: {}, disabledRules: [], document: '' },
    })),
  };
  return { name: SERVICE_NAMES.compliance, definition: ComplianceDefinition, implementation };
}
