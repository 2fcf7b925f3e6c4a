import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { CONSUL_SERVICE_NAMES, ConsulClient, hostPort } from '../services/common/discovery.js';
import { callUnary } from '../services/common/grpc-client.js';
import { packageRoot } from '../services/common/paths.js';
import { CoordinatorClient, ListNodesRequest } from '../services/common/proto.js';
import type { ServiceRole } from '../services/mesh/service-process.js';

const ROOT = packageRoot();
const STAGEMESH_BIN = join(ROOT, 'bin', 'stagemesh.js');

export interface LocalClusterOptions {
  /** Folder of the processes' logs and of the cluster's state file. */
  logDir: string;
  /** The Consul agent: one already answering there is used, else a dev agent is started with its HTTP API there. @default CONSUL_HTTP_ADDR, else 127.0.0.1:8500 */
  consulAddr?: string;
  /** @default .tools/bin/consul */
  consulBin?: string;
  databaseUrl: string;
  databaseSchema: string;
  natsUrl: string;
  natsStream: string;
  natsSubjectPrefix: string;
  schedulers?: number;
  coordinators?: number;
  workers?: number;
  /** Stages each worker runs at once. @default 8 */
  workerCapacity?: number;
  /** Attempt lease (coordinators). @default "10s" */
  leaseTtl?: string;
  /** Scheduler replica lease. @default "3s" */
  schedulerLeaseTtl?: string;
  /** Keep running after this process exits (`stagemesh cluster up`); stop with LocalCluster.down(logDir). @default false */
  detached?: boolean;
  /** Longest start() waits for every process to be registered and every worker connected. @default 60000 */
  readyTimeoutMs?: number;
  /** Extra environment of every process. */
  env?: Record<string, string>;
  /** Address the services listen on and register in Consul. @default "127.0.0.1" */
  host?: string;
}

/** One process of the cluster. */
export interface ClusterProcess {
  /** "scheduler-1", "worker-3", "consul", … */
  name: string;
  role: ServiceRole | 'worker' | 'consul';
  pid: number;
  logFile: string;
}

interface Spec {
  name: string;
  role: ClusterProcess['role'];
  command: string;
  args: string[];
}

/** What `cluster up` leaves in the log folder for `cluster down`. */
interface StateFile {
  processes: ClusterProcess[];
}

const STATE_FILE = 'cluster.json';

/**
 * A whole distributed stagemesh on this machine's loopback: a Consul agent
 * (unless one answers already), scheduler and coordinator replicas, the
 * event bus, compliance and metrics, each `stagemesh serve` in its own
 * process, and `stagemesh worker` processes that find coordinators through
 * Consul. PostgreSQL and NATS are the ones given. Each process logs to its
 * own file in `logDir`.
 */
export class LocalCluster {
  readonly #children = new Map<string, ChildProcess>();
  readonly #specs = new Map<string, Spec>();
  readonly processes = new Map<string, ClusterProcess>();
  readonly consul: ConsulClient;
  #onExit?: () => void;

  private constructor(readonly options: LocalClusterOptions) {
    this.consul = new ConsulClient(options.consulAddr);
  }

  /** Starts every process and waits until Consul lists them all healthy and every worker is connected. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = new LocalCluster(options);
    try {
      await cluster.#start();
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  async #start(): Promise<void> {
    const o = this.options;
    mkdirSync(o.logDir, { recursive: true });
    if (!o.detached) {
      // Whatever happens to the test or command that started them, the processes go with it.
      this.#onExit = () => {
        for (const child of this.#children.values()) if (child.exitCode === null) child.kill('SIGKILL');
      };
      process.once('exit', this.#onExit);
    }
    if (!(await this.#consulAnswers())) {
      const consulBin = o.consulBin ?? join(ROOT, '.tools', 'bin', 'consul');
      if (!existsSync(consulBin)) throw new Error(`no Consul agent answers at ${this.consul.baseUrl} and ${consulBin} is missing: run \`make tools\``);
      const port = new URL(this.consul.baseUrl).port;
      const dataDir = join(o.logDir, 'consul-data');
      this.#spawn({
        name: 'consul',
        role: 'consul',
        command: consulBin,
        args: ['agent', '-dev', '-node', 'stagemesh-cluster', '-bind', '127.0.0.1', '-client', '127.0.0.1', '-advertise', '127.0.0.1', '-http-port', port, '-data-dir', dataDir, '-log-level', 'warn'],
      });
      await this.#waitFor('the Consul agent to elect itself leader', async () => this.#consulAnswers());
    }
    // Instance ids name the process (stagemesh-scheduler-1, …): a restarted one takes its own place again.
    const serve = (role: ServiceRole, n: number) =>
      this.#spawn({ name: `${role}-${n}`, role, command: process.execPath, args: [STAGEMESH_BIN, 'serve', role, '--instance-id', `stagemesh-${role}-${n}`, '--log-level', 'info'] });
    for (let i = 1; i <= (o.schedulers ?? 2); i++) serve('scheduler', i);
    for (let i = 1; i <= (o.coordinators ?? 2); i++) serve('coordinator', i);
    serve('event-bus', 1);
    serve('compliance', 1);
    serve('metrics', 1);
    await this.waitForServices();
    for (let i = 1; i <= (o.workers ?? 5); i++) this.#spawnWorker(i);
    await this.waitForWorkers(o.workers ?? 5);
    this.#saveState();
  }

  #spawnWorker(n: number): void {
    this.#spawn({
      name: `worker-${n}`,
      role: 'worker',
      command: process.execPath,
      args: [STAGEMESH_BIN, '--address', `consul://${new URL(this.consul.baseUrl).host}`, 'worker', '--node-id', `worker-${n}`, '--capacity', String(this.options.workerCapacity ?? 8), '--log-level', 'info'],
    });
  }

  #env(): NodeJS.ProcessEnv {
    const o = this.options;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CONSUL_HTTP_ADDR: new URL(this.consul.baseUrl).host,
      STAGEMESH_DATABASE_URL: o.databaseUrl,
      STAGEMESH_DATABASE_SCHEMA: o.databaseSchema,
      STAGEMESH_NATS_URL: o.natsUrl,
      STAGEMESH_NATS_STREAM: o.natsStream,
      STAGEMESH_NATS_SUBJECT_PREFIX: o.natsSubjectPrefix,
      STAGEMESH_LEASE_TTL: o.leaseTtl ?? '10s',
      STAGEMESH_SCHEDULER_LEASE_TTL: o.schedulerLeaseTtl ?? '3s',
      STAGEMESH_HOST: o.host ?? '127.0.0.1',
      ...o.env,
    };
    // Coverage of a test run is the test process's own; a killed child would leave half a report.
    delete env.NODE_V8_COVERAGE;
    return env;
  }

  #spawn(spec: Spec): ClusterProcess {
    this.#specs.set(spec.name, spec);
    const logFile = join(this.options.logDir, `${spec.name}.log`);
    const fd = openSync(logFile, 'a');
    try {
      const child = spawn(spec.command, spec.args, { stdio: ['ignore', fd, fd], env: this.#env(), detached: this.options.detached ?? false });
      if (this.options.detached) child.unref();
      if (child.pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command})`);
      this.#children.set(spec.name, child);
      const proc: ClusterProcess = { name: spec.name, role: spec.role, pid: child.pid, logFile };
      this.processes.set(spec.name, proc);
      return proc;
    } finally {
      closeSync(fd);
    }
  }

  /** Sends `signal` to one process (SIGKILL: a crash) and waits until it has exited. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#children.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  }

  /** Starts a stopped process again with the same command (a scheduler gets a new instance id). */
  restart(name: string): ClusterProcess {
    const spec = this.#specs.get(name);
    if (!spec) throw new Error(`no process ${name} in this cluster`);
    const child = this.#children.get(name);
    if (child && child.exitCode === null && child.signalCode === null) throw new Error(`${name} is still running`);
    return this.#spawn(spec);
  }

  /** Waits until Consul lists as many healthy instances of each service as are running. */
  async waitForServices(): Promise<void> {
    const expected = new Map<string, number>();
    for (const [name, proc] of this.processes) {
      const child = this.#children.get(name);
      if (proc.role === 'consul' || proc.role === 'worker' || !child || child.exitCode !== null || child.signalCode !== null) continue;
      const service = CONSUL_SERVICE_NAMES[proc.role === 'event-bus' ? 'eventBus' : proc.role];
      expected.set(service, (expected.get(service) ?? 0) + 1);
    }
    await this.#waitFor(`${[...expected].map(([s, n]) => `${n} ${s}`).join(', ')} to pass their Consul checks`, async () => {
      for (const [service, n] of expected) if ((await this.consul.healthy(service)).instances.length !== n) return false;
      return true;
    });
  }

  /** Waits until the coordinators have `count` workers connected in all. */
  async waitForWorkers(count: number): Promise<void> {
    await this.#waitFor(`${count} workers to connect to the coordinators`, async () => (await this.connectedWorkers()).length === count);
  }

  /** Node ids of the workers connected to every healthy coordinator. */
  async connectedWorkers(): Promise<string[]> {
    const { instances } = await this.consul.healthy(CONSUL_SERVICE_NAMES.coordinator);
    const nodes = await Promise.all(
      instances.map(async (i) => {
        const client = new CoordinatorClient(hostPort(i), credentials.createInsecure());
        try {
          return (await callUnary(client.listNodes.bind(client), ListNodesRequest.fromPartial({}), { timeoutMs: 2_000 })).nodes.map((n) => n.nodeId);
        } finally {
          client.close();
        }
      }),
    );
    return nodes.flat().sort();
  }

  async #consulAnswers(): Promise<boolean> {
    try {
      const res = await fetch(`${this.consul.baseUrl}/v1/status/leader`, { signal: AbortSignal.timeout(1_000) });
      return res.ok && ((await res.json()) as string) !== '';
    } catch {
      return false;
    }
  }

  async #waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 60_000);
    let last: unknown;
    while (Date.now() < deadline) {
      for (const [name, child] of this.#children) {
        if (child.exitCode !== null && this.processes.get(name)) {
          throw new Error(`${name} exited (code ${child.exitCode}) while waiting for ${what}; its log:\n${tail(this.processes.get(name)!.logFile)}`);
        }
      }
      try {
        if (await check()) return;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
  }

  #saveState(): void {
    const state: StateFile = { processes: [...this.processes.values()] };
    writeFileSync(join(this.options.logDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }

  /** Stops every process: SIGTERM (services deregister and drain), then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    await stopInOrder([...this.processes.values()], graceMs);
    if (this.#onExit) process.off('exit', this.#onExit);
    rmSync(join(this.options.logDir, STATE_FILE), { force: true });
    rmSync(join(this.options.logDir, 'consul-data'), { recursive: true, force: true });
  }

  /** Stops the cluster `cluster up` left running with its state in `logDir`. Returns how many processes it stopped. */
  static async down(logDir: string, graceMs = 10_000): Promise<number> {
    const path = join(logDir, STATE_FILE);
    if (!existsSync(path)) return 0;
    const state = JSON.parse(readFileSync(path, 'utf8')) as StateFile;
    const stopped = await stopInOrder(state.processes, graceMs);
    rmSync(path, { force: true });
    rmSync(join(logDir, 'consul-data'), { recursive: true, force: true });
    return stopped;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops processes by pid: workers first, then the services, Consul last, so
 * nothing is left looking for a peer. Each group gets SIGTERM, then SIGKILL
 * after `graceMs`. Returns how many were still running.
 */
async function stopInOrder(processes: readonly ClusterProcess[], graceMs: number): Promise<number> {
  let stopped = 0;
  for (const rank of [0, 1, 2]) {
    const group = processes.filter((p) => stopRank(p) === rank && alive(p.pid));
    for (const p of group) process.kill(p.pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (group.some((p) => alive(p.pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const p of group) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
    while (group.some((p) => alive(p.pid))) await new Promise((r) => setTimeout(r, 20));
    stopped += group.length;
  }
  return stopped;
}

function stopRank(p: ClusterProcess): number {
  return p.role === 'worker' ? 0 : p.role === 'consul' ? 2 : 1;
}

/** The last lines of a log file, for an error message. */
function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
