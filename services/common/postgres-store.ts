import pg from 'pg';
import { migrate, MIGRATION_LOCK, type Queryable, type Store } from './store.js';

export interface PostgresStoreOptions {
  /** `postgres://user@host:port/database` */
  connectionString: string;
  /** Schema holding the tables (created if missing); the server's default search_path when absent. */
  schema?: string;
  /** Connections in the pool. @default 10 */
  maxConnections?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The distributed profile's store: PostgreSQL through a `pg` pool, with the
 * same SQL and migrations as the embedded PGlite store.
 */
export class PostgresStore implements Store {
  #closing?: Promise<void>;

  private constructor(private readonly pool: pg.Pool) {}

  /**
   * Connects, creates the schema when one is named, and applies migrations.
   * @throws Error when the schema name is not a plain lower-case identifier.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
      throw new Error(`schema "${options.schema}" must be a lower-case identifier ([a-z_][a-z0-9_]*)`);
    }
    if (options.schema) {
      const admin = new pg.Client({ connectionString: options.connectionString });
      await admin.connect();
      try {
        // Processes starting together would race to create it: they take turns.
        await admin.query('BEGIN');
        await admin.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        await admin.query(`CREATE SCHEMA IF NOT EXISTS ${options.schema}`);
        await admin.query('COMMIT');
      } finally {
        await admin.end();
      }
    }
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
    });
    // An idle client losing its server (a restart) must not crash the process: the pool replaces it.
    pool.on('error', () => undefined);
    const store = new PostgresStore(pool);
    try {
      await migrate(store);
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  async query<Row = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
    const result = await this.pool.query(sql, params);
    return result.rows as Row[];
  }

  async script(statements: readonly string[]): Promise<void> {
    // Without parameters, pg sends one simple Query: its statements run as one implicit transaction.
    if (statements.length > 0) await this.pool.query(statements.join(';\n'));
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn({ query: async <Row>(sql: string, params: unknown[] = []) => (await client.query(sql, params)).rows as Row[] });
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
      throw err;
    } finally {
      // A connection whose rollback failed is discarded rather than reused.
      client.release(broken);
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.pool.end();
    return this.#closing;
  }
}
