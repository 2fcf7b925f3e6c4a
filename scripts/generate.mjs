// Generates the TypeScript contracts and the descriptor set from proto/.
// Output goes to generated/ (git-ignored, never edited by hand): this runs as
// part of `npm run build`, so a fresh clone needs no manual step.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const buf = join(dirname(require.resolve('@bufbuild/buf/package.json')), 'bin', 'buf');
const googleProtos = join(dirname(require.resolve('google-proto-files/package.json')), 'google');
const healthProto = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto', 'health', 'v1', 'health.proto');

rmSync(join(root, 'generated'), { recursive: true, force: true });
const deps = join(root, 'generated', 'proto-deps', 'google', 'api');
mkdirSync(deps, { recursive: true });
for (const file of ['annotations.proto', 'http.proto']) {
  cpSync(join(googleProtos, 'api', file), join(deps, file));
}
// grpc.health.v1 joins the descriptor set so reflection describes it as buf built it.
const healthDir = join(root, 'generated', 'proto-deps', 'grpc', 'health', 'v1');
mkdirSync(healthDir, { recursive: true });
cpSync(healthProto, join(healthDir, 'health.proto'));

const run = (...args) => execFileSync(buf, args, { cwd: root, stdio: 'inherit' });
if (process.argv.includes('--lint')) run('lint');
run('generate', '--template', 'buf.gen.yaml', 'proto');
// The descriptor set feeds server reflection and, later, Envoy's gRPC-JSON transcoder.
run('build', '--as-file-descriptor-set', '-o', 'generated/stagemesh.binpb');
