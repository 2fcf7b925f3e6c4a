#!/usr/bin/env node
// Entry point of the `stagemesh` command; the CLI itself is built into dist/ by `npm run build`.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('stagemesh: not built yet; run `npm install` (or `npm run build`) in the stagemesh folder\n');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
