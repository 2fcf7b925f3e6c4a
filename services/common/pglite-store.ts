import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { migrate, type Queryable, type Store } from './store.js';

/**
 * The embedded store: PGlite (PostgreSQL compiled to WebAssembly) persisting
 * to `dataDir`, with the same SQL and migrations as the PostgreSQL store.
 */
export class PgliteStore implements Store {
  #closing?: Promise<void>;

  private constructor(private readonly db: PGlite) {}

  /** Opens (creating if needed) the store in `dataDir` and applies migrations. Pass `memory://` for a throwaway store. */
  static async open(dataDir: string): Promise<PgliteStore> {
    if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
    const db = await PGlite.create(dataDir);
    // PGlite runs no autovacuum, so table statistics stay those of an empty
    // table and the planner would join a batch of changes to a whole table
    // with a sequential scan, slower with every run stored. The store's
    // statements join batches on primary keys: index lookups are always right.
    await db.exec('SET enable_hashjoin = off; SET enable_mergejoin = off');
    const store = new PgliteStore(db);
    await migrate(store);
    return store;
  }

  async query<Row = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
    const result = await this.db.query<Row>(sql, params);
    return result.rows;
  }

  async script(statements: readonly string[]): Promise<void> {
    // exec sends one simple Query: its statements run as one implicit transaction.
    if (statements.length > 0) await this.db.exec(statements.join(';\n'));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) =>
      fn({ query: async <Row>(sql: string, params: unknown[] = []) => (await tx.query<Row>(sql, params)).rows }),
    );
  }

  close(): Promise<void> {
    this.#closing ??= this.db.close();
    return this.#closing;
  }
}
