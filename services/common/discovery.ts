import { experimental, status as Status } from '@grpc/grpc-js';
import type { Logger } from './logger.js';

/** The Consul agent's HTTP API when neither `--consul` nor CONSUL_HTTP_ADDR names one. */
export const DEFAULT_CONSUL_HTTP_ADDR = '127.0.0.1:8500';

/** The name each service registers under in Consul (and its traces carry). */
export const CONSUL_SERVICE_NAMES = {
  scheduler: 'stagemesh-scheduler',
  coordinator: 'stagemesh-coordinator',
  eventBus: 'stagemesh-event-bus',
  compliance: 'stagemesh-compliance',
  metrics: 'stagemesh-metrics',
} as const;

/** Longest a blocking health query waits for a change before Consul answers anyway. */
const WATCH_WAIT = '30s';
/** Delay before asking Consul again after a failed query, doubled up to the maximum. */
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

/**
 * The base URL of a Consul agent's HTTP API from what users write in
 * CONSUL_HTTP_ADDR: "host:port", or a URL with http(s)://.
 * @throws Error for anything else.
 */
export function consulBaseUrl(addr: string = process.env.CONSUL_HTTP_ADDR || DEFAULT_CONSUL_HTTP_ADDR): string {
  const withScheme = /^https?:\/\//.test(addr) ? addr : `http://${addr}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`the Consul address "${addr}" is not host:port or an http(s) URL`);
  }
  if (!url.port && !/^https?:\/\/[^/]+:\d+/.test(withScheme)) url.port = url.protocol === 'https:' ? '8501' : '8500';
  return `${url.protocol}//${url.host}`;
}

/** One healthy instance of a service, as Consul's health API lists it. */
export interface ServiceInstance {
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
}

export interface ServiceRegistration {
  /** Unique among every instance of every service in the cluster. */
  id: string;
  name: string;
  address: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
}

interface HealthEntry {
  Service: { ID: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null };
  Node: { Address: string };
}

/** The small part of Consul's HTTP API stagemesh uses: agent registration and health queries. */
export class ConsulClient {
  readonly baseUrl: string;

  constructor(addr?: string) {
    this.baseUrl = consulBaseUrl(addr);
  }

  async #request(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (!res.ok) throw new Error(`Consul ${method} ${path}: HTTP ${res.status} ${(await res.text()).trim()}`);
    return res;
  }

  /**
   * Registers an instance with the local agent, checked by Consul calling its
   * `grpc.health.v1.Health/Check` every second. An instance that stays
   * critical for a minute (a crash nobody deregistered) is removed by Consul.
   */
  async register(reg: ServiceRegistration): Promise<void> {
    await this.#request('PUT', '/v1/agent/service/register', {
      ID: reg.id,
      Name: reg.name,
      Address: reg.address,
      Port: reg.port,
      Tags: reg.tags ?? [],
      Meta: reg.meta ?? {},
      Check: {
        CheckID: `${reg.id}:grpc`,
        Name: `${reg.name} gRPC health`,
        GRPC: `${reg.address}:${reg.port}`,
        GRPCUseTLS: false,
        Interval: '1s',
        Timeout: '1s',
        DeregisterCriticalServiceAfter: '1m',
      },
    });
  }

  async deregister(id: string): Promise<void> {
    await this.#request('PUT', `/v1/agent/service/deregister/${encodeURIComponent(id)}`);
  }

  /**
   * The instances of `name` whose checks all pass. With `index`, a blocking
   * query: Consul answers when the list changes or after `wait`.
   */
  async healthy(name: string, opts: { index?: string; wait?: string; signal?: AbortSignal } = {}): Promise<{ instances: ServiceInstance[]; index: string }> {
    const query = new URLSearchParams({ passing: '1' });
    if (opts.index) query.set('index', opts.index);
    if (opts.wait) query.set('wait', opts.wait);
    const res = await this.#request('GET', `/v1/health/service/${encodeURIComponent(name)}?${query}`, undefined, opts.signal);
    const entries = (await res.json()) as HealthEntry[];
    const instances = entries
      .map((e) => ({ id: e.Service.ID, address: e.Service.Address || e.Node.Address, port: e.Service.Port, tags: e.Service.Tags ?? [], meta: e.Service.Meta ?? {} }))
      .sort((a, b) => a.id.localeCompare(b.id));
    return { instances, index: res.headers.get('x-consul-index') ?? '' };
  }
}

type InstancesListener = (instances: readonly ServiceInstance[]) => void;

/**
 * Follows the healthy instances of one service with Consul blocking queries
 * (a long poll that returns as soon as the list changes), and tells its
 * listeners each new list. One watch per agent and service is shared by
 * every channel and caller in the process (see ServiceWatch.shared).
 */
export class ServiceWatch {
  static readonly #shared = new Map<string, { watch: ServiceWatch; users: number }>();
  readonly #listeners = new Set<InstancesListener>();
  readonly #abort = new AbortController();
  #instances?: ServiceInstance[];
  #firstResult: Promise<void>;
  #resolveFirst!: () => void;
  /** The last error of a failed query, while queries fail. */
  lastError?: Error;

  constructor(
    readonly consul: ConsulClient,
    readonly service: string,
    private readonly logger?: Logger,
  ) {
    this.#firstResult = new Promise((resolve) => (this.#resolveFirst = resolve));
    void this.#loop();
  }

  /** The process-wide watch of `service` at `consulAddr`; release it with the returned function. */
  static shared(consulAddr: string | undefined, service: string, logger?: Logger): { watch: ServiceWatch; release: () => void } {
    const consul = new ConsulClient(consulAddr);
    const key = `${consul.baseUrl}/${service}`;
    let entry = ServiceWatch.#shared.get(key);
    if (!entry) ServiceWatch.#shared.set(key, (entry = { watch: new ServiceWatch(consul, service, logger), users: 0 }));
    entry.users++;
    let released = false;
    return {
      watch: entry.watch,
      release: () => {
        if (released) return;
        released = true;
        if (--entry.users === 0) {
          ServiceWatch.#shared.delete(key);
          entry.watch.close();
        }
      },
    };
  }

  /** The healthy instances as last seen; undefined before Consul first answered. */
  get instances(): readonly ServiceInstance[] | undefined {
    return this.#instances;
  }

  /** Resolves once Consul has answered once (with any list, an empty one too). */
  ready(): Promise<void> {
    return this.#firstResult;
  }

  /** Calls `listener` with every new list (and at once with the current one, if known); returns the unsubscribe function. */
  onChange(listener: InstancesListener): () => void {
    this.#listeners.add(listener);
    if (this.#instances) listener(this.#instances);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#abort.abort();
    this.#listeners.clear();
  }

  async #loop(): Promise<void> {
    let index = '';
    let delayMs = RETRY_MIN_MS;
    while (!this.#abort.signal.aborted) {
      try {
        const result = await this.consul.healthy(this.service, { index, wait: WATCH_WAIT, signal: this.#abort.signal });
        delayMs = RETRY_MIN_MS;
        this.lastError = undefined;
        // Consul's index only grows; one that went back (an agent restart) starts over.
        index = Number(result.index) > 0 && Number(result.index) >= Number(index || 0) ? result.index : '';
        const changed = !this.#instances || !sameInstances(this.#instances, result.instances);
        this.#instances = result.instances;
        this.#resolveFirst();
        if (changed) for (const listener of [...this.#listeners]) listener(result.instances);
      } catch (err) {
        if (this.#abort.signal.aborted) return;
        this.lastError = err as Error;
        this.logger?.warn({ err: (err as Error).message, service: this.service }, 'Consul health query failed; retrying');
        index = '';
        await new Promise((resolve) => setTimeout(resolve, delayMs).unref());
        delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
      }
    }
  }
}

function sameInstances(a: readonly ServiceInstance[], b: readonly ServiceInstance[]): boolean {
  return a.length === b.length && a.every((x, i) => x.id === b[i]!.id && x.address === b[i]!.address && x.port === b[i]!.port);
}

/** Round-robin over every resolved address: calls spread over all healthy instances. */
const ROUND_ROBIN = { loadBalancingConfig: [{ round_robin: {} }], methodConfig: [] };

/**
 * A grpc-js name resolver for `consul://[agent host:port]/<service>` targets:
 * the channel's addresses are the healthy instances of the service, followed
 * with a blocking Consul query, spread round-robin. An instance whose check
 * turns critical (or that deregisters) leaves the channel's rotation as soon
 * as Consul reports it. Without an authority the agent is CONSUL_HTTP_ADDR,
 * else 127.0.0.1:8500.
 */
class ConsulResolver implements experimental.Resolver {
  readonly #agent: string | undefined;
  readonly #service: string;
  #watch?: { watch: ServiceWatch; release: () => void };
  #unsubscribe?: () => void;
  #failTimer?: NodeJS.Timeout;

  constructor(
    target: experimental.GrpcUri,
    private readonly listener: experimental.ResolverListener,
  ) {
    this.#agent = target.authority || undefined;
    this.#service = target.path.replace(/^\/+/, '');
  }

  updateResolution(): void {
    // The watch reports every change as it happens; asking again (the channel
    // does when a connection fails) has nothing newer to tell.
    if (this.#watch) return;
    if (!this.#service) {
      process.nextTick(() => this.#fail('the target names no service: use consul:///<service> or consul://<agent host:port>/<service>'));
      return;
    }
    this.#watch = ServiceWatch.shared(this.#agent, this.#service);
    const watch = this.#watch.watch;
    // Consul may be unreachable: fail the channel's calls (they wait for a result otherwise) until it answers.
    this.#failTimer = setTimeout(() => {
      if (!watch.instances) this.#fail(`Consul at ${watch.consul.baseUrl} did not answer for ${this.#service}${watch.lastError ? `: ${watch.lastError.message}` : ''}`);
    }, 5_000);
    this.#failTimer.unref();
    this.#unsubscribe = watch.onChange((instances) => process.nextTick(() => this.#report(instances)));
  }

  #report(instances: readonly ServiceInstance[]): void {
    if (!this.#watch) return;
    if (instances.length === 0) {
      this.#fail(`no healthy instance of ${this.#service} in Consul`);
      return;
    }
    const endpoints = instances.map((i) => ({ addresses: [{ host: i.address, port: i.port }] }));
    this.listener(experimental.statusOrFromValue(endpoints), {}, experimental.statusOrFromValue(ROUND_ROBIN) as never, '');
  }

  #fail(details: string): void {
    this.listener(experimental.statusOrFromError({ code: Status.UNAVAILABLE, details }), {}, null, details);
  }

  destroy(): void {
    clearTimeout(this.#failTimer);
    this.#unsubscribe?.();
    this.#watch?.release();
    this.#watch = undefined;
    this.#unsubscribe = undefined;
  }

  static getDefaultAuthority(target: experimental.GrpcUri): string {
    return target.path.replace(/^\/+/, '');
  }
}

let registered = false;

/** Lets every grpc-js channel of this process use `consul://` targets. Safe to call twice. */
export function registerConsulResolver(): void {
  if (registered) return;
  registered = true;
  experimental.registerResolver('consul', ConsulResolver);
}

/** The gRPC target of a service resolved through Consul, e.g. consul://127.0.0.1:8500/stagemesh-scheduler. */
export function consulTarget(service: string, consulAddr?: string): string {
  registerConsulResolver();
  return `consul://${new URL(consulBaseUrl(consulAddr)).host}/${service}`;
}

/**
 * One gRPC client per healthy instance of a service, for callers that must
 * reach a given replica (the coordinator answering a scheduler's outcomes to
 * the replica that owns the run) or know which replica took a call (the
 * scheduler tracking which coordinator holds each task). Clients of
 * instances that leave Consul's healthy list are closed, and `onGone`
 * listeners hear of them.
 */
export class InstanceClients<C extends { close(): void }> {
  readonly watch: ServiceWatch;
  readonly #release: () => void;
  readonly #unsubscribe: () => void;
  readonly #clients = new Map<string, { instance: ServiceInstance; client: C }>();
  readonly #goneListeners = new Set<(ids: string[]) => void>();

  constructor(consulAddr: string | undefined, service: string, private readonly create: (address: string) => C, logger?: Logger) {
    const { watch, release } = ServiceWatch.shared(consulAddr, service, logger);
    this.watch = watch;
    this.#release = release;
    this.#unsubscribe = watch.onChange((instances) => this.#update(instances));
  }

  #update(instances: readonly ServiceInstance[]): void {
    const now = new Map(instances.map((i) => [i.id, i]));
    const gone: string[] = [];
    for (const [id, { instance, client }] of this.#clients) {
      const current = now.get(id);
      if (current && current.address === instance.address && current.port === instance.port) continue;
      client.close();
      this.#clients.delete(id);
      if (!current) gone.push(id);
    }
    for (const instance of instances) {
      if (!this.#clients.has(instance.id)) this.#clients.set(instance.id, { instance, client: this.create(hostPort(instance)) });
    }
    if (gone.length > 0) for (const listener of this.#goneListeners) listener(gone);
  }

  /** The client of a healthy instance, by its Consul id. */
  get(id: string): C | undefined {
    return this.#clients.get(id)?.client;
  }

  /** Every healthy instance with its client, by id. */
  list(): { instance: ServiceInstance; client: C }[] {
    return [...this.#clients.values()].sort((a, b) => a.instance.id.localeCompare(b.instance.id));
  }

  /** Calls `listener` with the ids of instances that left the healthy list; returns the unsubscribe function. */
  onGone(listener: (ids: string[]) => void): () => void {
    this.#goneListeners.add(listener);
    return () => this.#goneListeners.delete(listener);
  }

  close(): void {
    this.#unsubscribe();
    this.#release();
    this.#goneListeners.clear();
    for (const { client } of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** "host:port" of an instance, with brackets around an IPv6 host. */
export function hostPort(instance: Pick<ServiceInstance, 'address' | 'port'>): string {
  return instance.address.includes(':') ? `[${instance.address}]:${instance.port}` : `${instance.address}:${instance.port}`;
}

/**
 * The gRPC target of one service from what users give as the mesh address:
 * "host:port" (every service at one address: the embedded mesh) as it is, or
 * "consul://[agent host:port]" to resolve each service through Consul.
 */
export function serviceTarget(address: string, service: string): string {
  if (!address.startsWith('consul:')) return address;
  const agent = address.replace(/^consul:(\/\/)?/, '').replace(/\/.*$/, '');
  return consulTarget(service, agent || undefined);
}
