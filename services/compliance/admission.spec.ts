import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { toServiceError } from '../common/grpc-status.js';
import { validatePipeline } from './rules.js';
import { InvalidArgumentError } from '../common/errors.js';
import { admissionError, refusalReason, reportFromStatusError, reportToStatusError } from './admission.js';

describe('reportToStatusError()', () => {
  it('answers nothing for a report that passed', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop }' });
    assert.equal(reportToStatusError({ ...report, passed: true }), undefined);
  });

  it('refuses with FAILED_PRECONDITION carrying the whole report in the status details', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop, needs: [a] }' });
    const error = toServiceError(reportToStatusError(report));
    assert.equal(error.code, status.FAILED_PRECONDITION);
    assert.match(error.details, /breaks UCL2 \(Precedence\): UCL2-cycle at stages\[0\]\.needs/);
    assert.deepEqual(reportFromStatusError(error), report);
  });

  it('says the score and threshold when no law is broken', () => {
    const report = validatePipeline({ document: 'name: p\nstages:\n  - { id: a, framework: noop }' });
    assert.match(refusalReason(report), /scored 0\.\d\d, below the admission threshold 0\.90/);
  });

  it('finds no report in an error without details', () => {
    assert.equal(reportFromStatusError({ metadata: undefined }), undefined);
  });
});

describe('admissionError()', () => {
  const doc = (stages: string) => `name: p\nversion: "1"\ndescription: d\nowner: o\nsource: s\nlabels: { a: b }\nstages:\n${stages}`;

  it('answers INVALID_ARGUMENT with the field path for a definition that is not a DAG', () => {
    const error = admissionError(validatePipeline({ document: doc('  - { id: a, framework: noop, needs: [a] }') }));
    assert.ok(error instanceof InvalidArgumentError);
    assert.equal(error.fieldPath, 'stages[0].needs');
  });

  it('answers FAILED_PRECONDITION with the report for a readable pipeline that breaks a law', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: shell, run: { command: "deploy", env: { DB_PASSWORD: hunter2hunter2 } } }') });
    const error = toServiceError(admissionError(report));
    assert.equal(error.code, status.FAILED_PRECONDITION);
    assert.match(error.details, /UCL5-secret at stages\[0\]\.run\.env\.DB_PASSWORD/);
    assert.equal(reportFromStatusError(error)?.score, report.score);
  });

  it('admits a pipeline that passes', () => {
    const report = validatePipeline({ document: doc('  - { id: a, framework: noop }') });
    assert.equal(admissionError({ ...report, passed: true }), undefined);
  });
});
