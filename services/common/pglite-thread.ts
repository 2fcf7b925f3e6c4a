// The thread that owns the embedded store's PGlite (see PgliteStore): it runs
// the statements the mesh's thread sends, one at a time in the order sent, so
// PostgreSQL's WebAssembly executes beside the mesh's event loop instead of
// inside it.
import { mkdirSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import type { StoreReply, StoreRequest, StoreThreadData } from './pglite-store.js';

const port = parentPort!;
const { dataDir, createOnly } = workerData as StoreThreadData;

async function open(): Promise<PGlite> {
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  const db = await PGlite.create(dataDir);
  // PGlite runs no autovacuum, so table statistics stay those of an empty
  // table and the planner would join a batch of changes to a whole table
  // with a sequential scan, slower with every run stored. The store's
  // statements join batches on primary keys: index lookups are always right.
  await db.exec('SET enable_hashjoin = off; SET enable_mergejoin = off');
  // When a WAL segment fills, PostgreSQL makes the next one, and by default
  // writes all 16 MB of it with zeros first. PGlite has no background process
  // to do that ahead, so the commit that crosses the boundary waited for it:
  // 40-60 ms every 2-3 s under 6,000 stages/s, the slowest commits there
  // were. Without zero-filling, the file is made at its size by writing its
  // last byte; what is written into it and when stays the same.
  await db.exec('SET wal_init_zero = off');
  return db;
}

async function run(db: PGlite, request: StoreRequest): Promise<unknown[]> {
  switch (request.op) {
    case 'query':
      return (await db.query(request.sql, request.params)).rows;
    case 'exec':
      await db.exec(request.sql);
      return [];
    case 'close':
      await db.close();
      return [];
  }
}

const opened = open();
opened.then(
  () => port.postMessage({ id: 0, rows: [] } satisfies StoreReply),
  (err: unknown) => port.postMessage({ id: 0, error: errorOf(err) } satisfies StoreReply),
);
if (createOnly) {
  // Only lay out the data folder; the thread then ends, and its memory with it.
  opened.then((db) => db.close(), () => undefined);
} else {
  let queue: Promise<unknown> = Promise.resolve();
  port.on('message', (request: StoreRequest) => {
    queue = queue.then(async () => {
      try {
        port.postMessage({ id: request.id, rows: await run(await opened, request) } satisfies StoreReply);
      } catch (err) {
        port.postMessage({ id: request.id, error: errorOf(err) } satisfies StoreReply);
      }
    });
  });
}

function errorOf(err: unknown): StoreReply['error'] {
  const e = err as { message?: string; name?: string; code?: string; detail?: string };
  return { message: e?.message ?? String(err), name: e?.name ?? 'Error', code: e?.code, detail: e?.detail };
}
