import { BoxbuildError } from '../../errors.js';
import type { DownloadResult, NetContext, SmallFile } from '../download.js';
import { type FetchedManifest, RegistryClient } from './client.js';
import { type Endpoint, endpointsOf, loadRegistriesConf } from './mirrors.js';
import { type OciReference, formatReference } from './reference.js';

/**
 * What a pull reads from: the mirrors registries.conf names for the reference, then the registry
 * itself. Each request goes first to the endpoint that answered last, then to the others in order:
 * blobs are named by their digest, so any endpoint that has one serves it.
 */
export class PullSource {
  private readonly clients: RegistryClient[];
  private preferred = 0;

  constructor(
    private readonly ctx: NetContext,
    private readonly ref: OciReference,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const endpoints: Endpoint[] = endpointsOf(ref, loadRegistriesConf(env));
    this.clients = endpoints.map((endpoint) => new RegistryClient(ctx, endpoint.ref, 'pull', { env, insecure: endpoint.insecure }));
  }

  /** The first answer of the endpoints (undefined counts as none while another may have it); one line listing them when none answers. */
  private async first<T>(task: (client: RegistryClient) => Promise<T>): Promise<T> {
    const order = [this.preferred, ...this.clients.keys()].filter((index, at, all) => all.indexOf(index) === at);
    const failures: unknown[] = [];
    let missing = false;
    for (const index of order) {
      try {
        const answer = await task(this.clients[index]!);
        if (answer === undefined && index !== order.at(-1)) {
          missing = true;
          continue;
        }
        this.preferred = index;
        return answer;
      } catch (error) {
        if (this.ctx.signal?.aborted) throw error;
        failures.push(error);
      }
    }
    if (missing && failures.length === 0) return undefined as T;
    if (failures.length === 1) throw failures[0];
    throw new BoxbuildError('boxUnavailable', `${formatReference(this.ref)}: none of its ${this.clients.length - 1} mirrors nor the registry answered`, {
      detail: failures.map((failure) => (failure as Error).message).join('\n'),
      cause: new AggregateError(failures, 'every endpoint failed'),
    });
  }

  manifest(reference: string): Promise<FetchedManifest> {
    return this.first((client) => client.manifest(reference));
  }

  findManifest(reference: string): Promise<FetchedManifest | undefined> {
    return this.first((client) => client.findManifest(reference));
  }

  /** The digest of what a tag names: one HEAD (a GET when the registry does not say it). */
  manifestDigest(reference: string): Promise<string> {
    return this.first(async (client) => (await client.manifestDigest(reference)) ?? (await client.manifest(reference)).digest);
  }

  smallBlob(blob: { digest: string; size: number }, kind: SmallFile): Promise<Buffer> {
    return this.first((client) => client.smallBlob(blob, kind));
  }

  downloadBlob(digest: string, partial: string, label: string, offset = 0): Promise<DownloadResult> {
    return this.first((client) => client.downloadBlob(digest, partial, label, offset));
  }
}
