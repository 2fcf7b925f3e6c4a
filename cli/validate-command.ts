import type { Command } from 'commander';
import { validatePipeline } from '../services/compliance/rules.js';
import { callUnary, createMeshClients } from '../services/common/grpc-client.js';
import { Report } from '../services/common/proto.js';
import { ExitCode } from './cli-error.js';
import { readInputFile } from './files.js';
import { describeCallError, formatReport } from './output.js';
import { addressOf } from './address.js';

export function registerValidateCommand(program: Command): void {
  program
    .command('validate')
    .description('check pipeline files against the compliance rules (exit 0 clean, 1 findings, 2 usage error)')
    .argument('<files...>', 'pipeline definitions (YAML or JSON)')
    .option('--json', 'print the reports as JSON')
    .option('--local', 'validate in this process with the built-in rules instead of asking the mesh')
    .action(async (files: string[], opts: { json?: boolean; local?: boolean }) => {
      const documents = await Promise.all(files.map(async (file) => ({ file, document: await readInputFile(file) })));
      const address = addressOf(program);
      const clients = opts.local ? undefined : createMeshClients(address);
      const reports: { file: string; report: Report }[] = [];
      try {
        for (const { file, document } of documents) {
          const report = clients
            ? (await callUnary(clients.compliance.validate.bind(clients.compliance), { document })).report!
            : validatePipeline({ document });
          reports.push({ file, report });
        }
      } catch (err) {
        throw describeCallError(err, address);
      } finally {
        clients?.close();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(reports.map((r) => ({ file: r.file, report: Report.toJSON(r.report) })), null, 2)}\n`);
      else process.stdout.write(`${reports.map((r) => formatReport(r.file, r.report)).join('\n')}\n`);
      process.exitCode = reports.some((r) => r.report.findings.length > 0) ? ExitCode.FAILED : ExitCode.OK;
    });
}
