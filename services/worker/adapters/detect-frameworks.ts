import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { packageRoot } from '../../common/paths.js';
import type { FrameworkAdapter } from './framework-adapter.js';
import { HttpAdapter } from './http-adapter.js';
import { ShellAdapter } from './shell-adapter.js';
import { SleepAdapter } from './sleep-adapter.js';
import { findMocha, mochaAdapter, nodeTestAdapter, pytestAdapter } from './test-runner-adapters.js';

/** Every framework a worker knows how to run, when its tools are present. */
export const KNOWN_FRAMEWORKS = ['shell', 'node-test', 'mocha', 'pytest', 'http', 'noop', 'sleep'] as const;

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function answers(program: string, args: string[]): boolean {
  try {
    execFileSync(program, args, { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * The adapters this machine can really run: shell needs /bin/sh, mocha a
 * mocha (the stage's project's, this install's or one on PATH), pytest a
 * working `pytest`; node-test, http, noop and sleep need only Node.
 * `only` narrows the list (a worker's --frameworks).
 * @throws Error naming a framework in `only` that is unknown or not available here.
 */
export function detectAdapters(only?: readonly string[]): FrameworkAdapter[] {
  const adapters: FrameworkAdapter[] = [new HttpAdapter(), new SleepAdapter('noop'), new SleepAdapter('sleep'), nodeTestAdapter()];
  const wanted = (framework: string) => !only || only.includes(framework);
  if (wanted('shell') && answers('/bin/sh', ['-c', 'true'])) adapters.push(new ShellAdapter());
  const mocha = wanted('mocha') ? (findMocha(packageRoot()) ?? onPath('mocha')) : undefined;
  if (mocha) adapters.push(mochaAdapter(mocha));
  const pytest = wanted('pytest') ? onPath('pytest') : undefined;
  if (pytest && answers(pytest, ['--version'])) adapters.push(pytestAdapter(pytest));
  const chosen = adapters.filter((a) => wanted(a.framework));
  for (const framework of only ?? []) {
    if (!(KNOWN_FRAMEWORKS as readonly string[]).includes(framework)) throw new Error(`unknown framework "${framework}" (known: ${KNOWN_FRAMEWORKS.join(', ')}, wait-event)`);
    if (!chosen.some((a) => a.framework === framework)) throw new Error(`framework "${framework}" cannot run on this machine (its tool was not found)`);
  }
  return chosen;
}
