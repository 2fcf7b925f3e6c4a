import type { Command } from 'commander';
import { resolve } from 'node:path';
import { LocalCluster } from './cluster.js';
import { CliError, ExitCode } from './cli-error.js';

/** Where `cluster up` keeps logs and its state file (git-ignored). */
export const DEFAULT_CLUSTER_DIR = '.cluster';

interface UpFlags {
  dir: string;
  schedulers: string;
  coordinators: string;
  workers: string;
  workerCapacity: string;
}

function count(value: string, flag: string, min: number, max = 64): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`${flag} expects an integer from ${min} to ${max}, got "${value}"`, ExitCode.USAGE);
  return n;
}

export function registerClusterCommand(program: Command): void {
  const cluster = program.command('cluster').description('a whole distributed stagemesh on this machine: Consul, replicated services and workers (make cluster)');
  cluster
    .command('up')
    .description('start Consul (unless one answers at CONSUL_HTTP_ADDR), 2 schedulers, 2 coordinators, event-bus, compliance, metrics and 5 workers; PostgreSQL and NATS must be running')
    .option('--dir <dir>', 'folder for the logs and the state file', DEFAULT_CLUSTER_DIR)
    .option('--schedulers <n>', 'scheduler replicas', '2')
    .option('--coordinators <n>', 'coordinator replicas', '2')
    .option('--workers <n>', 'worker processes', '5')
    .option('--worker-capacity <n>', 'stages each worker runs at once', '8')
    .action(async (opts: UpFlags) => {
      const dir = resolve(opts.dir);
      const env = process.env;
      const started = Date.now();
      const up = await LocalCluster.start({
        logDir: dir,
        consulAddr: env.CONSUL_HTTP_ADDR || undefined,
        databaseUrl: env.STAGEMESH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
        databaseSchema: env.STAGEMESH_DATABASE_SCHEMA || 'stagemesh_cluster',
        natsUrl: env.STAGEMESH_NATS_URL || 'nats://127.0.0.1:4222',
        natsStream: env.STAGEMESH_NATS_STREAM || 'STAGEMESH_CLUSTER',
        natsSubjectPrefix: env.STAGEMESH_NATS_SUBJECT_PREFIX || 'stagemesh.cluster',
        schedulers: count(opts.schedulers, '--schedulers', 1),
        coordinators: count(opts.coordinators, '--coordinators', 1),
        workers: count(opts.workers, '--workers', 0),
        workerCapacity: count(opts.workerCapacity, '--worker-capacity', 1, 10_000),
        detached: true,
      }).catch((err: unknown) => {
        throw new CliError(`cluster up failed: ${(err as Error).message}`, ExitCode.FAILED, { cause: err });
      });
      const consul = up.consul.baseUrl;
      process.stdout.write(
        `stagemesh cluster up in ${Date.now() - started} ms: ${up.processes.size} processes, logs in ${dir}\n` +
          `Consul ${consul} (UI ${consul}/ui); try: npx stagemesh --address consul://${new URL(consul).host} run examples/hello.yaml\n` +
          `stop it with: make cluster-down\n`,
      );
    });
  cluster
    .command('down')
    .description('stop every process `cluster up` started')
    .option('--dir <dir>', 'the folder `cluster up` used', DEFAULT_CLUSTER_DIR)
    .action(async (opts: { dir: string }) => {
      const stopped = await LocalCluster.down(resolve(opts.dir));
      process.stdout.write(stopped > 0 ? `stopped ${stopped} processes\n` : 'no cluster was running\n');
    });
}
