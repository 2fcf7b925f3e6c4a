import { Command, CommanderError } from 'commander';
import { startTelemetry, stopTelemetry, TracedComponent, tracingEnabled } from '../services/common/telemetry.js';
import { CliError, ExitCode } from './cli-error.js';
import { registerBenchCommand } from './bench-command.js';
import { registerClusterCommand } from './cluster-command.js';
import { registerRunCommand } from './run-command.js';
import { registerRunsCommand } from './runs-command.js';
import { registerServeCommand } from './serve-command.js';
import { registerStartCommand } from './start-command.js';
import { registerValidateCommand } from './validate-command.js';
import { registerEventsCommand } from './events-command.js';
import { registerMetricsCommand } from './metrics-command.js';
import { registerWorkerCommand } from './worker-command.js';

/** Builds the `stagemesh` command line. */
export function createProgram(): Command {
  const program = new Command('stagemesh')
    .description('run and inspect multi-framework pipelines on a stagemesh mesh')
    .option('--address <host:port>', 'mesh gRPC address (STAGEMESH_ADDRESS, default 127.0.0.1:50051)')
    .showHelpAfterError()
    .exitOverride();
  registerStartCommand(program);
  registerServeCommand(program);
  registerClusterCommand(program);
  registerRunCommand(program);
  registerRunsCommand(program);
  registerValidateCommand(program);
  registerEventsCommand(program);
  registerMetricsCommand(program);
  registerWorkerCommand(program);
  registerBenchCommand(program);
  return program;
}

/** Runs the CLI with `argv` and resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  // OpenTelemetry when the OTEL_* variables ask for it, started for the command
  // that runs (the mesh's own spans are its services'; the rest are the edge's,
  // the worker's or the CLI's) and flushed before the command returns.
  let ownsTelemetry = false;
  program.hook('preAction', async (_, command) => {
    const name = command.name();
    // The benchmark turns tracing on and off itself (observability_overhead).
    if (tracingEnabled() || name === 'bench') return;
    // `serve <service>` traces as that service (the role names are the components' names).
    const served = name === 'serve' && (Object.values(TracedComponent) as string[]).includes(String(command.args[0])) ? (command.args[0] as TracedComponent) : undefined;
    ownsTelemetry = await startTelemetry({ processComponent: served ?? (name === 'start' ? TracedComponent.EDGE : name === 'worker' ? TracedComponent.WORKER : TracedComponent.CLI) });
  });
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? ExitCode.OK);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; everything else commander rejects is a usage error.
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    if (err instanceof CliError) {
      process.stderr.write(`stagemesh: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`stagemesh: ${(err as Error).stack ?? String(err)}\n`);
    return ExitCode.FAILED;
  } finally {
    if (ownsTelemetry) await stopTelemetry();
  }
}
