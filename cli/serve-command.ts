import type { Command } from 'commander';
import { resolveMeshConfig, type ConfigInput } from '../services/common/config.js';
import { ConfigError } from '../services/common/errors.js';
import { createLogger } from '../services/common/logger.js';
import { SERVICE_ROLES, ServiceProcess, type ServiceRole } from '../services/mesh/service-process.js';
import { CliError, ExitCode } from './cli-error.js';

interface ServeFlags extends ConfigInput {
  port?: string;
  consul?: string;
  instanceId?: string;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .argument('<service>', `the service to run: ${SERVICE_ROLES.join(', ')}`)
    .description('run one service of the distributed profile in this process, registered in Consul (state in PostgreSQL, events on NATS JetStream)')
    .option('--config <file>', 'YAML config file (also STAGEMESH_CONFIG)')
    .option('--host <host>', 'interface to listen on and to register in Consul (STAGEMESH_HOST, default 127.0.0.1)')
    .option('--port <port>', 'gRPC port (default: a free one; Consul tells clients which)')
    .option('--consul <addr>', 'Consul agent HTTP API, host:port or URL (CONSUL_HTTP_ADDR, default 127.0.0.1:8500)')
    .option('--instance-id <id>', 'this instance\'s id in Consul (default: service name and a random suffix)')
    .option('--database-url <url>', 'PostgreSQL of the scheduler, compliance and metrics (STAGEMESH_DATABASE_URL)')
    .option('--database-schema <name>', 'schema in that database (STAGEMESH_DATABASE_SCHEMA)')
    .option('--nats-url <url>', 'NATS server with JetStream (STAGEMESH_NATS_URL, default nats://127.0.0.1:4222)')
    .option('--nats-stream <name>', 'JetStream stream of the events (STAGEMESH_NATS_STREAM, default STAGEMESH_EVENTS)')
    .option('--nats-subject-prefix <prefix>', 'subject prefix of the events (STAGEMESH_NATS_SUBJECT_PREFIX, default stagemesh.events)')
    .option('--lease-ttl <duration>', 'attempt lease without heartbeat, coordinator (STAGEMESH_LEASE_TTL, default 30s)')
    .option('--scheduler-lease-ttl <duration>', 'how long a scheduler keeps its runs without renewing (STAGEMESH_SCHEDULER_LEASE_TTL, default 5s)')
    .option('--log-level <level>', 'log level (STAGEMESH_LOG_LEVEL, default info)')
    .action(async (service: string, opts: ServeFlags) => {
      if (!(SERVICE_ROLES as readonly string[]).includes(service)) throw new CliError(`unknown service "${service}": expected one of ${SERVICE_ROLES.join(', ')}`, ExitCode.USAGE);
      const role = service as ServiceRole;
      const { port, consul, instanceId, ...flags } = opts;
      let config;
      try {
        config = resolveMeshConfig({ ...flags, grpcPort: port ?? '0', eventBus: 'jetstream' });
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(`invalid configuration: ${err.message}`, ExitCode.USAGE, { cause: err });
        throw err;
      }
      const logger = createLogger({ level: config.logLevel, name: `stagemesh-${role}` });
      const started = await ServiceProcess.start({ role, config, logger, consulAddr: consul, instanceId }).catch((err: unknown) => {
        if (err instanceof ConfigError) throw new CliError(err.message, ExitCode.USAGE, { cause: err });
        throw new CliError(`cannot start ${role}: ${(err as Error).message}`, ExitCode.FAILED, { cause: err });
      });
      process.stdout.write(`stagemesh ${role} ${started.instanceId} ready on ${config.host}:${started.port}\n`);
      const onSignal = () => void started.stop();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      await started.closed;
    });
}
