export { defaultAdapters, Worker, type WorkerOptions, type WorkerState } from './worker.js';
export { emptyEvidence, type AttemptResult, type FrameworkAdapter } from './adapters/framework-adapter.js';
export { HttpAdapter } from './adapters/http-adapter.js';
export { parseOutputs, ShellAdapter } from './adapters/shell-adapter.js';
export { SleepAdapter } from './adapters/sleep-adapter.js';
