import { fileURLToPath } from 'node:url';
import { BoxbuildError } from '../../errors.js';
import { guestProxyEnvironment } from '../../network/guest.js';
import type { NetworkChoice } from '../../network/mode.js';
import { after, race, waitFor } from '../../util/abort.js';
import { Child, lastWords } from '../../util/child.js';
import { findOnPath } from '../../util/path.js';

/*
 * A container's network, by --network mode:
 * - none: its own network namespace with nothing but loopback.
 * - filtered (the default): the same, with the run's egress proxy in it at 127.0.0.1:3128 (the
 *   relay, a host process that joins the namespace, passes connections to the proxy's Unix socket):
 *   it reaches what a VM's filtered network reaches, and nothing of the host.
 * - full: the host's network (podman --network host), the host's loopback included, as a VM's full
 *   network reaches it; the host's proxy settings as they are.
 */

export const CONTAINER_EGRESS_PORT = 3128;
const CONTAINER_EGRESS_URL = `http://127.0.0.1:${CONTAINER_EGRESS_PORT}`;

export interface ContainerNetwork {
  /** podman create's options. */
  options: string[];
  /** Set in the container. */
  environment: Record<string, string>;
  /** The egress proxy's socket, which the relay joins the container's namespace to (filtered). */
  egressSocket?: string;
}

export function containerNetwork(choice: NetworkChoice, egressSocket: string | undefined, env: NodeJS.ProcessEnv = process.env): ContainerNetwork {
  if (choice.mode === 'full') return { options: ['--network', 'host'], environment: hostProxyEnvironment(env) };
  if (choice.mode === 'none') return { options: ['--network', 'none'], environment: {} };
  if (!egressSocket) throw new Error('a filtered network needs the egress proxy');
  const environment = Object.fromEntries(['http_proxy', 'https_proxy'].flatMap((name) => [name, name.toUpperCase()]).map((name) => [name, CONTAINER_EGRESS_URL]));
  return { options: ['--network', 'none'], environment, egressSocket };
}

/** The host's proxy settings, as they are (a container on the host's network reaches what the host reaches). */
function hostProxyEnvironment(env: NodeJS.ProcessEnv): Record<string, string> {
  const rewritten = guestProxyEnvironment(env);
  return Object.fromEntries(Object.keys(rewritten).map((name) => [name, env[name]!]));
}

const RELAY = fileURLToPath(new URL('./relay.js', import.meta.url));
/** How long the relay may take to listen. */
const RELAY_START_MS = 10_000;

/**
 * Starts the relay in the network namespace of process `pid` (the container's, created but not yet
 * running the build); resolves once it listens. Rootless podman's namespace belongs to its user
 * namespace, which the relay joins too (keeping its credentials).
 */
export async function startRelay(pid: number, socket: string, rootless: boolean, signal: AbortSignal): Promise<Child> {
  const nsenter = findOnPath('nsenter', ['/usr/bin', '/bin']);
  if (!nsenter) throw new BoxbuildError('containerUnavailable', 'a filtered container network needs nsenter (util-linux), which is not installed; or use --network none');
  const userns = rootless ? ['--user', '--preserve-credentials'] : [];
  const relay = new Child(nsenter, ['--target', String(pid), ...userns, '--net', '--', process.execPath, RELAY, socket, String(CONTAINER_EGRESS_PORT)], { stdio: ['pipe', 'pipe', 'pipe'], collect: true });
  const listening = new Promise<void>((resolve) => relay.process.stdout!.on('data', (chunk: Buffer) => chunk.includes('listening') && resolve()));
  try {
    await race(signal, [
      () => listening,
      async (s) => {
        const end = await waitFor(relay.ended, s);
        throw new BoxbuildError('containerUnavailable', `cannot give the container its network: ${lastWords(end)}`);
      },
      after(RELAY_START_MS, () => new BoxbuildError('containerUnavailable', 'cannot give the container its network: the relay did not start')),
    ]);
  } catch (error) {
    await relay.stop();
    throw error;
  }
  return relay;
}
