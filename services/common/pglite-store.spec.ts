import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Resident memory, in MB, of a fresh process that has opened a store on a new
 * data folder: PGlite's own instance is about 420 MB; the initdb instance that
 * creates the folder adds about 390 MB more for as long as it is not collected.
 */
const FRESH_STORE_RSS_LIMIT_MB = 600;

describe('PgliteStore.open()', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'stagemesh-pglite-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates a new data folder without keeping the memory of creating it', async function () {
    this.timeout(120_000);
    // A process of its own, so that only this store counts in its memory.
    const script = `
      const { PgliteStore } = await import(${JSON.stringify(new URL('./pglite-store.ts', import.meta.url).href)});
      const store = await PgliteStore.open(${JSON.stringify(join(dir, 'data'))});
      const [{ n }] = await store.query('SELECT count(*)::int AS n FROM runs');
      console.log(JSON.stringify({ rssMb: process.memoryUsage().rss / 2 ** 20, runs: n }));
      await store.close();
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 110_000 });
    const { rssMb, runs } = JSON.parse(stdout.trim().split('\n').at(-1)!) as { rssMb: number; runs: number };
    assert.equal(runs, 0, 'the migrated store is empty');
    assert.ok(existsSync(join(dir, 'data', 'PG_VERSION')), 'the data folder was created');
    assert.ok(rssMb < FRESH_STORE_RSS_LIMIT_MB, `resident memory ${rssMb.toFixed(0)} MB after opening a new store (limit ${FRESH_STORE_RSS_LIMIT_MB} MB)`);
  });
});
