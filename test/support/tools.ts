// Helpers for tests that drive stagemesh's external tools (consul, jaeger,
// ghz, grpcurl). The binaries are installed by `make tools` into
// <repo>/.tools/bin; see docs/tools.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../services/common/paths.js';

export type ToolName = 'consul' | 'jaeger' | 'ghz' | 'grpcurl';

/** Repository root, found from this file whether it runs from the sources or compiled into dist/ (the benchmark uses it). */
export const repoRoot = packageRoot();

/** Absolute path of `.tools/bin/<name>` in this clone (may not exist). */
export function toolPath(name: ToolName): string {
  return join(repoRoot, '.tools', 'bin', name);
}

/** The part of a mocha `this` that requireTool needs. */
export interface SkippableContext {
  skip(): void;
}

/**
 * Project rule for tests that need an external tool: a missing binary fails
 * the run on CI (CI=true) and skips the test, with the reason, elsewhere.
 * Returns the binary's path when it is present.
 */
export function requireTool(name: ToolName, ctx: SkippableContext): string {
  const path = toolPath(name);
  if (existsSync(path)) return path;
  const reason = `${name} is not installed at ${path}; run \`make tools\` to build it`;
  if (process.env.CI === 'true') {
    throw new Error(`required tool missing on CI: ${reason}`);
  }
  console.log(`      skipping: ${reason}`);
  ctx.skip();
  // mocha's skip() throws; this only satisfies the type checker.
  throw new Error(`skipped: ${reason}`);
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/**
 * `count` distinct free loopback ports. All listeners are held open until
 * every port is known, so the ports cannot repeat within one call.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createServer>>((ok, fail) => {
        const server = createServer();
        server.unref();
        server.once('error', fail);
        server.listen(0, '127.0.0.1', () => ok(server));
      }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') {
      throw new Error('could not read the port of a loopback listener');
    }
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise<void>((ok) => server.close(() => ok()))));
  return ports;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((ok) => setTimeout(ok, ms));
}

// ---------------------------------------------------------------------------
// Child processes that must never outlive the test run.

const running = new Set<ChildProcess>();
let exitHooksInstalled = false;

function killAllNow(): void {
  for (const child of running) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL whatever is still tracked.
  process.on('exit', killAllNow);
  // A terminal's Ctrl+C already reaches the children (same process group);
  // SIGTERM/SIGHUP sent to the test runner alone would not, so forward them.
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAllNow();
      process.kill(process.pid, signal);
    });
  }
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal) once the process has exited. */
  readonly exited: Promise<string>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** The tail of everything the process printed (stdout and stderr). */
  output(): string;
  /**
   * SIGTERM, then SIGKILL after `graceMs`; waits for the exit and removes
   * `cleanupPaths`. Safe to call any number of times.
   */
  stop(graceMs?: number): Promise<void>;
}

const OUTPUT_LIMIT = 64 * 1024;

/**
 * Spawns `bin args`, capturing its output, tracking it so it is killed when
 * the test process exits, and removing `cleanupPaths` when it is stopped.
 */
export function startManaged(
  name: string,
  bin: string,
  args: string[],
  cleanupPaths: string[] = [],
): ManagedProcess {
  installExitHooks();
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);

  let buffered = '';
  const capture = (chunk: Buffer): void => {
    buffered += chunk.toString('utf8');
    if (buffered.length > OUTPUT_LIMIT) buffered = buffered.slice(-OUTPUT_LIMIT);
  };
  child.stdout?.on('data', capture);
  child.stderr?.on('data', capture);

  let exitedFlag = false;
  const exited = new Promise<string>((ok) => {
    child.once('error', (err) => {
      capture(Buffer.from(`\n[failed to start ${bin}: ${err.message}]\n`));
      exitedFlag = true;
      running.delete(child);
      ok(`error: ${err.message}`);
    });
    child.once('close', (code, signal) => {
      exitedFlag = true;
      running.delete(child);
      ok(signal !== null ? `signal ${signal}` : `code ${String(code)}`);
    });
  });

  const removePaths = (): void => {
    for (const path of cleanupPaths) rmSync(path, { recursive: true, force: true });
  };

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      if (!exitedFlag) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((ok) => {
          timer = setTimeout(() => ok('timeout'), graceMs);
        });
        const first = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        if (first === 'timeout') {
          child.kill('SIGKILL');
          await exited;
        }
      }
      removePaths();
    })();
    return stopping;
  };

  return {
    name,
    child,
    exited,
    hasExited: () => exitedFlag,
    output: () => buffered,
    stop,
  };
}

/**
 * Polls `probe` until it returns a value other than undefined, for at most
 * `timeoutMs`. Gives up early, with the process output, if `proc` exits.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; proc?: ManagedProcess },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = 'no answer yet';
  for (;;) {
    if (opts.proc?.hasExited()) {
      throw new Error(
        `${opts.proc.name} exited (${await opts.proc.exited}) while waiting for ${what}.\n` +
          `--- ${opts.proc.name} output ---\n${opts.proc.output()}`,
      );
    }
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      const tail = opts.proc ? `\n--- ${opts.proc.name} output ---\n${opts.proc.output()}` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what} (last: ${lastError})${tail}`);
    }
    await sleep(opts.intervalMs ?? 200);
  }
}

/**
 * The environment for a stagemesh process a test starts: without c8's
 * NODE_V8_COVERAGE, because such processes run the compiled dist/ code and
 * c8 would merge their (source-mapped) coverage over the sources' own.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.NODE_V8_COVERAGE;
  return env;
}

/** The PostgreSQL the tests use (each makes its own schema and drops it). */
export const TEST_POSTGRES_URL = process.env.STAGEMESH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Runs one statement on TEST_POSTGRES_URL over a connection of its own (a test's setup, clean-up or check). */
export async function queryTestPostgres<Row = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Row[];
  } finally {
    await client.end();
  }
}

/**
 * Checks that PostgreSQL answers at TEST_POSTGRES_URL: in CI a missing server
 * fails the test loudly; elsewhere the test is skipped with the reason printed.
 */
export async function requirePostgres(ctx: SkippableContext): Promise<void> {
  const { default: pg } = await import('pg');
  const probe = new pg.Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await probe.connect();
    await probe.end();
  } catch (err) {
    if (process.env.CI === 'true') throw new Error(`PostgreSQL is required in CI but ${TEST_POSTGRES_URL} answered: ${(err as Error).message}`);
    console.log(`      skipped: no PostgreSQL at ${TEST_POSTGRES_URL} (${(err as Error).message})`);
    ctx.skip();
  }
}
