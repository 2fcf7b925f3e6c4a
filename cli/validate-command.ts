import type { Command } from 'commander';
import { validatePipeline } from '../services/compliance/rules.js';
import { parsePolicy, type ResolvedPolicy } from '../services/compliance/policy.js';
import { PolicyError } from '../services/compliance/errors.js';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { Report } from '../services/common/proto.js';
import { CliError, ExitCode } from './cli-error.js';
import { readInputFile } from './files.js';
import { describeCallError, formatReport } from './output.js';
import { addressOf } from './address.js';

/** Reads and checks a policy file before anything is sent, so a bad policy is a usage error (exit 2). */
async function readPolicyFile(path: string): Promise<{ text: string; policy: ResolvedPolicy }> {
  const text = await readInputFile(path);
  try {
    return { text, policy: parsePolicy(text) };
  } catch (err) {
    if (err instanceof PolicyError) throw new CliError(`${path}: ${err.message}`, ExitCode.USAGE, { cause: err });
    throw err;
  }
}

/**
 * `stagemesh validate FILE… [--json] [--policy FILE] [--local]`: scores each
 * file against the policy in force on the mesh (or `--policy`, or the
 * default policy with `--local`) and prints the reports grouped by stage.
 * Exit code 0 when every file passes the gate, 1 when one fails it or the
 * mesh cannot be reached, 2 on a usage error, an unreadable file or a
 * malformed policy.
 */
export function registerValidateCommand(program: Command): void {
  program
    .command('validate')
    .description('score pipeline files against the compliance policy (exit 0 passes the gate, 1 fails it, 2 usage error)')
    .argument('<files...>', 'pipeline definitions (YAML or JSON)')
    .option('--json', 'print the reports as JSON')
    .option('--policy <file>', 'score against this policy file instead of the policy in force')
    .option('--local', 'validate in this process with the built-in rules (and the default policy unless --policy) instead of asking the mesh')
    .action(async (files: string[], opts: { json?: boolean; local?: boolean; policy?: string }) => {
      const policy = opts.policy ? await readPolicyFile(opts.policy) : undefined;
      const documents = await Promise.all(files.map(async (file) => ({ file, document: await readInputFile(file) })));
      const address = addressOf(program);
      const clients = opts.local ? undefined : createMeshClients(address);
      const reports: { file: string; report: Report }[] = [];
      try {
        for (const { file, document } of documents) {
          const report = clients
            ? (await callUnary(clients.compliance.validate.bind(clients.compliance), { document, policy: policy && { threshold: 0, weights: {}, disabledRules: [], document: policy.text, enforcement: '' } })).report!
            : validatePipeline({ document }, { policy: policy?.policy });
          reports.push({ file, report });
        }
      } catch (err) {
        throw describeCallError(err, address);
      } finally {
        clients?.close();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(reports.map((r) => ({ file: r.file, report: Report.toJSON(r.report) })), null, 2)}\n`);
      else process.stdout.write(`${reports.map((r) => formatReport(r.file, r.report)).join('\n\n')}\n`);
      process.exitCode = reports.every((r) => r.report.passed) ? ExitCode.OK : ExitCode.FAILED;
    });
}
