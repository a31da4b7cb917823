import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { BUNDLED_REGISTRY } from '../box/registry.js';
import { CLI, freePort, seconds, table } from './measure.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const BOX = process.env.BOXBUILD_BENCH_OCI_BOX ?? 'debian-kiwi';

/** Debian's docker-registry, as scripts/setup-debian leaves it (or on PATH), serving a directory on 127.0.0.1. */
async function startRegistry(dir: string): Promise<{ host: string; stop: () => Promise<void> }> {
  const binary = [join(repo, '.cache/tools/docker-registry')].find(existsSync) ?? 'docker-registry';
  const host = `127.0.0.1:${await freePort()}`;
  const config = join(dir, 'registry.yml');
  await writeFile(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: ${host}\n`);
  const child = execa(binary, ['serve', config], { reject: false, stdin: 'ignore' });
  for (let tries = 0; ; tries++) {
    const answer = await fetch(`http://${host}/v2/`).catch(() => undefined);
    if (answer?.ok) break;
    if (tries > 100) throw new Error(`docker-registry did not start: ${(await child).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    host,
    stop: async () => {
      child.kill();
      await child;
    },
  };
}

async function timed(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const started = process.hrtime.bigint();
  const result = await execa(file, args, { env, reject: false, stdin: 'ignore' });
  if (result.exitCode !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.exitCode}): ${result.stderr}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * A box through a local registry (BOXBUILD_BENCH_OCI_BOX, default debian-kiwi, x86_64, taken from
 * the bench cache, made there first when missing): `box push`, a first pull into an empty cache,
 * the update check of a current box, and `skopeo copy` of the same artifact.
 */
export async function benchOci(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'boxbuild-bench-oci-'));
  const registry = await startRegistry(dir);
  try {
    const node = process.execPath;
    await timed(node, [CLI, 'box', 'fetch', BOX, '--arch', 'x86_64', '-q'], env);
    const ref = `${registry.host}/boxes/${BOX}:bench`;
    const push = await timed(node, [CLI, 'box', 'push', `${BOX}:x86_64`, ref, '-q'], env);
    const entry = (JSON.parse(await readFile(BUNDLED_REGISTRY, 'utf8')) as { boxes: Record<string, object> }).boxes[BOX];
    const overrides = join(dir, 'boxes.json');
    await writeFile(overrides, JSON.stringify({ boxes: { [BOX]: { ...entry, oci: ref } } }));
    const pulled = { ...env, BOXBUILD_CACHE_DIR: join(dir, 'cache') };
    const pull = await timed(node, [CLI, 'box', 'fetch', BOX, '--arch', 'x86_64', '--boxes', overrides, '-q'], pulled);
    const check = await timed(node, [CLI, 'box', 'fetch', BOX, '--arch', 'x86_64', '--boxes', overrides, '-q'], pulled);
    const skopeo = await timed('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${ref}`, `oci:${join(dir, 'skopeo')}`], env).then(seconds, (error: Error) => `failed: ${error.message.split('\n')[0]}`);
    const { stdout: size } = await execa('du', ['-sh', '--apparent-size', join(dir, 'storage')]);
    return `## A box through a local OCI registry (${BOX}, x86_64, ${size.split('\t')[0]})\n\n${table(
      ['what', 'time'],
      [
        ['boxbuild box push (empty registry)', seconds(push)],
        ['boxbuild box fetch: first pull into an empty cache', seconds(pull)],
        ['boxbuild box fetch: update check of the current box (one HEAD)', seconds(check)],
        ['skopeo copy --all docker://… oci:… (the same artifact)', skopeo],
      ],
    )}`;
  } finally {
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
