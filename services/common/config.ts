import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseDurationMs } from './duration.js';
import { ConfigError } from './errors.js';
import { LOG_LEVELS, type LogLevel } from './logger.js';

/** Settings of a mesh process, after defaults and validation. */
export interface MeshConfig {
  /** Interface the gRPC and HTTP listeners bind to. @default "127.0.0.1" */
  host: string;
  /** gRPC port serving all five services; 0 picks a free port. @default 50051 */
  grpcPort: number;
  /** HTTP edge port; 0 picks a free port. @default 8080 */
  httpPort: number;
  /** Folder of the embedded store. @default ".stagemesh" */
  dataDir: string;
  /** @default "info" */
  logLevel: LogLevel;
  /** Stages the embedded worker runs at once. @default 8 */
  workerCapacity: number;
  /** How long an attempt's lease lasts without a heartbeat. @default 30000 */
  leaseTtlMs: number;
  /** How long shutdown waits for in-flight work before forcing. @default 10000 */
  shutdownTimeoutMs: number;
  /** Event-log backend: `memory` (in-process) or `jetstream` (NATS JetStream at `natsUrl`). @default "memory" */
  eventBus: EventBusBackend;
  /** NATS server of the `jetstream` event bus. @default "nats://127.0.0.1:4222" */
  natsUrl: string;
  /** JetStream stream of the `jetstream` event bus. @default "STAGEMESH_EVENTS" */
  natsStream: string;
  /** Subject prefix of the `jetstream` event bus's events. @default "stagemesh.events" */
  natsSubjectPrefix: string;
  /** How long a scheduler replica keeps its runs without renewing its claim (`stagemesh serve scheduler`). @default 5000 */
  schedulerLeaseTtlMs: number;
  /** PostgreSQL to keep state in (`postgres://user@host:port/db`); empty keeps it in PGlite under dataDir. @default "" */
  databaseUrl: string;
  /** Schema of the PostgreSQL store (created if missing); empty uses the server's search_path. @default "" */
  databaseSchema: string;
  /** Time between the metrics service's checks of its baselines for regressions. @default 10000 */
  metricsCheckIntervalMs: number;
}

/** The event-log backends a mesh can use. */
export const EVENT_BUS_BACKENDS = ['memory', 'jetstream'] as const;
export type EventBusBackend = (typeof EVENT_BUS_BACKENDS)[number];

/** Raw, unvalidated values by setting name (flags use the same names). */
export type ConfigInput = Partial<Record<keyof MeshConfig | 'config', string | number | undefined>>;

interface Setting<K extends keyof MeshConfig> {
  key: K;
  env: string;
  file: string;
  parse: (value: string) => MeshConfig[K] | undefined;
  expected: string;
  fallback: MeshConfig[K];
}

const port = (value: string) => {
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
};
const positiveInt = (value: string) => {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : undefined;
};
const nonEmpty = (value: string) => (value.trim() === '' ? undefined : value);
const durationAtLeast = (minMs: number) => (value: string) => {
  const ms = parseDurationMs(value);
  return ms !== undefined && ms >= minMs ? ms : undefined;
};

const SETTINGS: { [K in keyof MeshConfig]: Setting<K> } = {
  host: { key: 'host', env: 'STAGEMESH_HOST', file: 'host', parse: nonEmpty, expected: 'a host name or address', fallback: '127.0.0.1' },
  grpcPort: { key: 'grpcPort', env: 'STAGEMESH_GRPC_PORT', file: 'grpc_port', parse: port, expected: 'a port number 0-65535', fallback: 50051 },
  httpPort: { key: 'httpPort', env: 'STAGEMESH_HTTP_PORT', file: 'http_port', parse: port, expected: 'a port number 0-65535', fallback: 8080 },
  dataDir: { key: 'dataDir', env: 'STAGEMESH_DATA_DIR', file: 'data_dir', parse: nonEmpty, expected: 'a folder path', fallback: '.stagemesh' },
  logLevel: {
    key: 'logLevel',
    env: 'STAGEMESH_LOG_LEVEL',
    file: 'log_level',
    parse: (v) => (LOG_LEVELS as readonly string[]).includes(v) ? (v as LogLevel) : undefined,
    expected: `one of ${LOG_LEVELS.join(', ')}`,
    fallback: 'info',
  },
  workerCapacity: { key: 'workerCapacity', env: 'STAGEMESH_WORKER_CAPACITY', file: 'worker_capacity', parse: positiveInt, expected: 'a positive integer', fallback: 8 },
  leaseTtlMs: { key: 'leaseTtlMs', env: 'STAGEMESH_LEASE_TTL', file: 'lease_ttl', parse: parseDurationMs, expected: 'a duration such as 30s', fallback: 30_000 },
  shutdownTimeoutMs: { key: 'shutdownTimeoutMs', env: 'STAGEMESH_SHUTDOWN_TIMEOUT', file: 'shutdown_timeout', parse: parseDurationMs, expected: 'a duration such as 10s', fallback: 10_000 },
  eventBus: {
    key: 'eventBus',
    env: 'STAGEMESH_EVENT_BUS',
    file: 'event_bus',
    parse: (v) => ((EVENT_BUS_BACKENDS as readonly string[]).includes(v) ? (v as EventBusBackend) : undefined),
    expected: `one of ${EVENT_BUS_BACKENDS.join(', ')}`,
    fallback: 'memory',
  },
  natsUrl: {
    key: 'natsUrl',
    env: 'STAGEMESH_NATS_URL',
    file: 'nats_url',
    parse: (v) => (/^(nats|tls|wss?):\/\/\S+$/.test(v) ? v : undefined),
    expected: 'a NATS URL such as nats://127.0.0.1:4222',
    fallback: 'nats://127.0.0.1:4222',
  },
  natsStream: {
    key: 'natsStream',
    env: 'STAGEMESH_NATS_STREAM',
    file: 'nats_stream',
    parse: (v) => (/^[A-Za-z0-9_-]+$/.test(v) ? v : undefined),
    expected: 'a JetStream stream name (letters, digits, "_" and "-")',
    fallback: 'STAGEMESH_EVENTS',
  },
  natsSubjectPrefix: {
    key: 'natsSubjectPrefix',
    env: 'STAGEMESH_NATS_SUBJECT_PREFIX',
    file: 'nats_subject_prefix',
    parse: (v) => (/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v) ? v : undefined),
    expected: 'dot-separated subject tokens such as stagemesh.events',
    fallback: 'stagemesh.events',
  },
  schedulerLeaseTtlMs: {
    key: 'schedulerLeaseTtlMs',
    env: 'STAGEMESH_SCHEDULER_LEASE_TTL',
    file: 'scheduler_lease_ttl',
    parse: durationAtLeast(1_000),
    expected: 'a duration of at least 1s, such as 5s',
    fallback: 5_000,
  },
  databaseUrl: {
    key: 'databaseUrl',
    env: 'STAGEMESH_DATABASE_URL',
    file: 'database_url',
    parse: (v) => (/^postgres(ql)?:\/\/\S+$/.test(v) ? v : undefined),
    expected: 'a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/stagemesh',
    fallback: '',
  },
  databaseSchema: {
    key: 'databaseSchema',
    env: 'STAGEMESH_DATABASE_SCHEMA',
    file: 'database_schema',
    parse: (v) => (/^[a-z_][a-z0-9_]{0,62}$/.test(v) ? v : undefined),
    expected: 'a lower-case identifier ([a-z_][a-z0-9_]*)',
    fallback: '',
  },
  metricsCheckIntervalMs: {
    key: 'metricsCheckIntervalMs',
    env: 'STAGEMESH_METRICS_CHECK_INTERVAL',
    file: 'metrics_check_interval',
    parse: durationAtLeast(100),
    expected: 'a duration of at least 100ms, such as 10s',
    fallback: 10_000,
  },
};

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}`, 'config', { cause: err });
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`, 'config', { cause: err });
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`config file ${path} must be a mapping`, 'config');
  const known = new Set(Object.values(SETTINGS).map((s) => s.file));
  for (const key of Object.keys(data)) {
    if (!known.has(key)) throw new ConfigError(`unknown setting "${key}" in ${path} (known: ${[...known].join(', ')})`, key);
  }
  return data as Record<string, unknown>;
}

/**
 * Resolves the configuration of a mesh process: flags win over `STAGEMESH_*`
 * environment variables, which win over the config file (`--config` or
 * `STAGEMESH_CONFIG`), which wins over the defaults.
 * @throws ConfigError naming the setting and where its bad value came from.
 */
export function resolveMeshConfig(flags: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): MeshConfig {
  const configPath = flags.config ?? env.STAGEMESH_CONFIG;
  const file = configPath ? readConfigFile(String(configPath)) : {};
  const config = {} as Record<keyof MeshConfig, unknown>;
  for (const setting of Object.values(SETTINGS) as Setting<keyof MeshConfig>[]) {
    const sources: [string, unknown][] = [
      [`--${setting.key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, flags[setting.key]],
      [setting.env, env[setting.env]],
      [`${configPath}: ${setting.file}`, file[setting.file]],
    ];
    const found = sources.find(([, value]) => value !== undefined && value !== '');
    if (!found) {
      config[setting.key] = setting.fallback;
      continue;
    }
    const [origin, raw] = found;
    const value = setting.parse(String(raw));
    if (value === undefined) throw new ConfigError(`expected ${setting.expected}, got ${JSON.stringify(raw)}`, origin);
    config[setting.key] = value;
  }
  return config as MeshConfig;
}
