import type { Command } from 'commander';
import { resolveMeshConfig, type ConfigInput } from '../services/common/config.js';
import { ConfigError, UnavailableError } from '../services/common/errors.js';
import { createLogger } from '../services/common/logger.js';
import { EmbeddedMesh } from '../services/mesh/embedded-mesh.js';
import { CliError, ExitCode } from './cli-error.js';

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('start the embedded mesh: all five services, one worker and the HTTP edge in one process')
    .option('--config <file>', 'YAML config file (also STAGEMESH_CONFIG)')
    .option('--host <host>', 'interface to listen on (STAGEMESH_HOST, default 127.0.0.1)')
    .option('--grpc-port <port>', 'gRPC port of all five services (STAGEMESH_GRPC_PORT, default 50051)')
    .option('--http-port <port>', 'HTTP edge port (STAGEMESH_HTTP_PORT, default 8080)')
    .option('--data-dir <dir>', 'store folder (STAGEMESH_DATA_DIR, default .stagemesh)')
    .option('--log-level <level>', 'log level (STAGEMESH_LOG_LEVEL, default info)')
    .option('--worker-capacity <n>', 'stages the local worker runs at once (STAGEMESH_WORKER_CAPACITY, default 8)')
    .action(async (opts: ConfigInput) => {
      let config;
      try {
        config = resolveMeshConfig(opts);
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(`invalid configuration: ${err.message}`, ExitCode.USAGE, { cause: err });
        throw err;
      }
      const logger = createLogger({ level: config.logLevel });
      const started = Date.now();
      const mesh = await EmbeddedMesh.start(config, logger).catch((err: unknown) => {
        throw err instanceof UnavailableError ? new CliError(err.message, ExitCode.FAILED, { cause: err }) : err;
      });
      process.stdout.write(
        `stagemesh ready in ${Date.now() - started} ms: gRPC ${config.host}:${mesh.grpcPort} (scheduler, coordinator, event-bus, compliance, metrics), ` +
          `HTTP http://${config.host}:${mesh.httpPort}/healthz, data ${config.dataDir}\n` +
          `try: npx stagemesh run examples/hello.yaml   (Ctrl-C stops the mesh)\n`,
      );
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          logger.warn('second signal: exiting without waiting');
          process.exit(130);
        }
        logger.info({ signal }, 'stopping: draining running stages');
        void mesh.stop().then(() => {
          logger.info('stopped');
          process.exitCode = 0;
        });
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      await mesh.closed;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
}
