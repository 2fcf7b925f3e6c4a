import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { migrate, type Queryable, type Store } from './store.js';

/** What the store's thread (pglite-thread.ts) is asked to do. */
export type StoreCommand = { op: 'query'; sql: string; params: unknown[] } | { op: 'exec'; sql: string } | { op: 'close' };

/** A command with the id its reply will carry. */
export type StoreRequest = StoreCommand & { id: number };

/** What the store's thread is started with. */
export interface StoreThreadData {
  dataDir: string;
  /** Create the data folder, then close it and end the thread. */
  createOnly?: boolean;
}

/** The thread's answer to the request with the same id (id 0: the store is open). */
export interface StoreReply {
  id: number;
  rows?: unknown[];
  error?: { message: string; name: string; code?: string; detail?: string };
}

/** A statement the store refused, with PostgreSQL's SQLSTATE code when it has one. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    message: string,
    readonly code?: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

/**
 * The embedded store: PGlite (PostgreSQL compiled to WebAssembly) persisting
 * to `dataDir`, with the same SQL and migrations as the PostgreSQL store.
 * PGlite runs in a thread of its own, so the statements of a commit execute on
 * the machine's other core while the mesh goes on serving its streams; a
 * statement resolves once PGlite has executed it and synced the data folder.
 */
export class PgliteStore implements Store {
  #closing?: Promise<void>;
  #nextId = 1;
  readonly #waiting = new Map<number, { resolve: (rows: unknown[]) => void; reject: (err: Error) => void }>();
  /** Statements go one after another: a transaction's statements are never interleaved with others. */
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: StoreReply) => {
      const waiting = this.#waiting.get(reply.id);
      if (!waiting) return;
      this.#waiting.delete(reply.id);
      if (reply.error) waiting.reject(new StoreError(reply.error.message, reply.error.code, reply.error.detail));
      else waiting.resolve(reply.rows ?? []);
    });
    // A thread that dies takes every statement in flight with it.
    const fail = (err: Error) => {
      for (const waiting of this.#waiting.values()) waiting.reject(err);
      this.#waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new StoreError(`the store's thread exited (code ${code})`)));
  }

  /** Opens (creating if needed) the store in `dataDir` and applies migrations. Pass `memory://` for a throwaway store. */
  static async open(dataDir: string): Promise<PgliteStore> {
    // Creating a data folder runs initdb, a WebAssembly instance of its own
    // whose ~350 MB stay allocated in the thread that ran it until that
    // thread's next full garbage collection, which an idle store may never
    // have. A thread of its own creates the folder and exits, taking that
    // memory with it.
    if (!dataDir.startsWith('memory://') && !existsSync(join(dataDir, 'PG_VERSION'))) await createDataDir(dataDir);
    const worker = storeThread({ dataDir });
    const store = new PgliteStore(worker);
    try {
      await new Promise<unknown[]>((resolve, reject) => store.#waiting.set(0, { resolve, reject }));
      await migrate(store);
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return store;
  }

  #send(request: StoreCommand): Promise<unknown[]> {
    const id = this.#nextId++;
    return new Promise<unknown[]>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }

  /** Runs `work` once everything queued before it has finished. */
  #inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(work);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  query<Row = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
    return this.#inTurn(() => this.#send({ op: 'query', sql, params }) as Promise<Row[]>);
  }

  script(statements: readonly string[]): Promise<void> {
    // exec sends one simple Query: its statements run as one implicit transaction.
    if (statements.length === 0) return Promise.resolve();
    return this.#inTurn(async () => void (await this.#send({ op: 'exec', sql: statements.join(';\n') })));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.#inTurn(async () => {
      await this.#send({ op: 'exec', sql: 'BEGIN' });
      try {
        const result = await fn({ query: async <Row>(sql: string, params: unknown[] = []) => (await this.#send({ op: 'query', sql, params })) as Row[] });
        await this.#send({ op: 'exec', sql: 'COMMIT' });
        return result;
      } catch (err) {
        await this.#send({ op: 'exec', sql: 'ROLLBACK' }).catch(() => undefined);
        throw err;
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#inTurn(async () => {
      await this.#send({ op: 'close' }).catch(() => undefined);
      await this.worker.terminate();
    });
    return this.#closing;
  }
}

/** Starts the thread that owns a PGlite (pglite-thread.ts). */
function storeThread(workerData: StoreThreadData): Worker {
  // Run from the TypeScript sources (tests, tsx), the thread loads its .ts
  // file through tsx's loader, which a worker thread does not inherit.
  return import.meta.url.endsWith('.ts')
    ? new Worker(
        `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(new URL('./pglite-thread.ts', import.meta.url).href)}); })`,
        { eval: true, workerData },
      )
    : new Worker(new URL('./pglite-thread.js', import.meta.url), { workerData });
}

/** Creates a PGlite data folder in a thread that ends once it is done; rejects with the thread's error. */
function createDataDir(dataDir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = storeThread({ dataDir, createOnly: true });
    let error: Error | undefined;
    worker.on('message', (reply: StoreReply) => {
      if (reply.error) error = new StoreError(reply.error.message, reply.error.code, reply.error.detail);
    });
    worker.on('error', (err) => (error ??= err));
    worker.on('exit', (code) => (error || code !== 0 ? reject(error ?? new StoreError(`the store's thread exited (code ${code}) while creating ${dataDir}`)) : resolve()));
  });
}
