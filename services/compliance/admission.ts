import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import type { InvalidArgumentError } from '../common/errors.js';
import { problemsToError } from '../common/pipeline-document.js';
import { Report, Severity } from '../common/proto.js';

/** The standard trailer carrying a `google.rpc.Status` with typed details (https://google.aip.dev/193). */
export const STATUS_DETAILS_METADATA = 'grpc-status-details-bin';
/** The `google.protobuf.Any` type URL of a Report in the status details. */
export const REPORT_TYPE_URL = 'type.googleapis.com/stagemesh.v1.Report';

/** One line saying why the gate refused a pipeline: the broken laws, or the score under the threshold. */
export function refusalReason(report: Report): string {
  const broken = report.laws.filter((l) => !l.passed);
  if (broken.length > 0) {
    const first = report.findings.find((f) => f.severity === Severity.SEVERITY_ERROR);
    return `pipeline breaks ${broken.map((l) => `${l.id} (${l.name})`).join(', ')}${first ? `: ${first.ruleId} at ${first.fieldPath}: ${first.message}` : ''}`;
  }
  return `pipeline scored ${report.score.toFixed(2)}, below the admission threshold ${report.threshold.toFixed(2)}`;
}

/**
 * The admission gate's answer for a report that did not pass: a
 * FAILED_PRECONDITION status whose message says why and whose
 * `grpc-status-details-bin` trailer holds a `google.rpc.Status` with the
 * whole report as its one detail. Returns undefined when the report passed.
 * The error goes through `toServiceError` unchanged (it already has a code).
 */
export function reportToStatusError(report: Report): ServiceError | undefined {
  if (report.passed) return undefined;
  const message = refusalReason(report);
  // google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  // google.protobuf.Any { string type_url = 1; bytes value = 2; }
  const any = new BinaryWriter().uint32(10).string(REPORT_TYPE_URL).uint32(18).bytes(Report.encode(report).finish()).finish();
  const details = new BinaryWriter().uint32(8).int32(status.FAILED_PRECONDITION).uint32(18).string(message).uint32(26).bytes(any).finish();
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_METADATA, Buffer.from(details));
  const error = new Error(message) as ServiceError;
  error.code = status.FAILED_PRECONDITION;
  error.details = message;
  error.metadata = metadata;
  return error;
}

/** The report inside a refused call's status details (CLI, edge), or undefined when it carries none. */
export function reportFromStatusError(err: { metadata?: Metadata }): Report | undefined {
  const raw = err.metadata?.get(STATUS_DETAILS_METADATA)[0];
  if (!raw || typeof raw === 'string') return undefined;
  try {
    const outer = new BinaryReader(raw);
    while (outer.pos < outer.len) {
      const [field, wireType] = outer.tag();
      if (field !== 3) {
        outer.skip(wireType);
        continue;
      }
      const any = new BinaryReader(outer.bytes());
      let typeUrl = '';
      let value: Uint8Array | undefined;
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) typeUrl = any.string();
        else if (f === 2) value = any.bytes();
        else any.skip(w);
      }
      if (typeUrl === REPORT_TYPE_URL && value) return Report.decode(value);
    }
  } catch {
    // Details from another server that are not a google.rpc.Status: no report to show.
  }
  return undefined;
}

/**
 * Rules whose errors mean the definition itself is unusable (it cannot be
 * read, or its graph is not a DAG): bad input, answered INVALID_ARGUMENT with
 * the field path, as RegisterPipeline and SubmitRun always have.
 */
const STRUCTURAL_RULES: ReadonlySet<string> = new Set(['UCL1-syntax', 'UCL1-schema', 'UCL2-duplicate-id', 'UCL2-dangling-need', 'UCL2-cycle', 'UCL5-size']);

/**
 * The admission gate's decision for a report, as the error to throw, or
 * undefined to admit: INVALID_ARGUMENT (first structural error's field path)
 * when the definition is unusable; FAILED_PRECONDITION with the report in
 * the status details when it is readable but breaks another law or scores
 * below an enforced threshold.
 */
export function admissionError(report: Report): InvalidArgumentError | ServiceError | undefined {
  const structural = report.findings.filter((f) => f.severity === Severity.SEVERITY_ERROR && STRUCTURAL_RULES.has(f.ruleId));
  if (structural.length > 0) return problemsToError(structural);
  return reportToStatusError(report);
}
