import type { Readable } from 'node:stream';
import type { Response } from 'got';
import { BoxbuildError } from '../../errors.js';
import { type DownloadResult, type NetContext, type SmallFile, downloadFile, fetchSmallFile, requestSignal, withRetries } from '../download.js';
import { shown } from '../../util/shown.js';
import { describeNetError } from '../failures.js';
import { sha256Of } from '../hash.js';
import { HttpStatusError } from '../http.js';
import { MEDIA_TYPES, hexOf } from './artifact.js';
import { type Credentials, basicAuth, findCredentials, parseChallenge } from './auth.js';
import { DIGEST, type OciReference, formatReference, registryBase } from './reference.js';

/*
 * A small client of the OCI distribution API for one repository: manifests, blobs (through the
 * box downloads' resumable, verified downloadFile), uploads. Anonymous first; a 401 is answered
 * once as its WWW-Authenticate asks (a bearer token from the realm, or basic), with the
 * credentials `podman login` or `docker login` left in the user's auth file.
 */

export const MANIFEST_FILE: SmallFile = { what: 'manifest', maxBytes: 4 << 20 };
const TOKEN_ANSWER: SmallFile = { what: 'token answer', maxBytes: 1 << 20 };
const ACCEPT = `${MEDIA_TYPES.index}, ${MEDIA_TYPES.manifest}`;

export const sha256Digest = (bytes: Buffer) => `sha256:${sha256Of(bytes)}`;

export interface FetchedManifest {
  bytes: Buffer;
  /** The sha256 of the bytes (never the registry's word for it). */
  digest: string;
}

const failed = (response: Response, url: string) => new HttpStatusError(response.statusCode, response.statusMessage, url, response.headers['www-authenticate']);

export class RegistryClient {
  readonly base: string;
  private authorization?: string;
  private readonly credentials?: Credentials;

  constructor(
    private readonly ctx: NetContext,
    readonly ref: OciReference,
    private readonly actions: 'pull' | 'pull,push',
    { env = process.env, insecure = false }: { env?: NodeJS.ProcessEnv; insecure?: boolean } = {},
  ) {
    this.base = registryBase(ref.registry, env, insecure);
    this.credentials = findCredentials(ref.registry, ref.repository, env);
  }

  get name(): string {
    return formatReference({ registry: this.ref.registry, repository: this.ref.repository });
  }

  url(kind: 'manifests' | 'blobs', reference: string): string {
    return `${this.base}/v2/${this.ref.repository}/${kind}/${reference}`;
  }

  /** Requests to the registry carry its authorization; got drops it on a redirect to another origin (a blob store). */
  private get net(): NetContext {
    return this.authorization ? { ...this.ctx, client: this.ctx.client.extend({ headers: { authorization: this.authorization } }) } : this.ctx;
  }

  /** Runs a request; a 401 is answered once by logging in as the challenge asks, then the request is made again. */
  private async authed<T>(task: (net: NetContext) => Promise<T>): Promise<T> {
    try {
      return await task(this.net);
    } catch (error) {
      if (!(error instanceof HttpStatusError) || error.status !== 401) throw error;
      const first = this.authorization;
      await this.logIn(error.challenge);
      try {
        return await task(this.net);
      } catch (again) {
        if (!(again instanceof HttpStatusError) || again.status !== 401) throw again;
        const whose = this.credentials ? `the credentials in ${this.credentials.file}` : 'no credentials (log in with "podman login" or "docker login")';
        throw new BoxbuildError('boxUnavailable', `${this.name}: the registry refuses access with ${first === undefined ? whose : 'a renewed token'}`, { cause: again });
      }
    }
  }

  /** Runs a request of `what`; a failure other than boxbuild's own becomes one line naming it and its URL. */
  private async asking<T>(what: string, url: string, task: () => Promise<T>): Promise<T> {
    try {
      return await task();
    } catch (error) {
      if (error instanceof BoxbuildError || this.ctx.signal?.aborted) throw error;
      throw new BoxbuildError('boxUnavailable', `cannot download ${what} from ${url}: ${describeNetError(error)}`, { cause: error });
    }
  }

  private refused(why: string): BoxbuildError {
    return new BoxbuildError('boxUnavailable', `${this.name}: ${why}`);
  }

  /** Logs in as a 401's WWW-Authenticate asks: a bearer token from its realm, or basic credentials. */
  private async logIn(header: string | undefined): Promise<void> {
    const challenge = parseChallenge(header);
    if (!challenge) throw this.refused(`the registry asks for a login boxbuild does not speak (${header ? `WWW-Authenticate: ${shown(header, 80)}` : 'no WWW-Authenticate'})`);
    if (challenge.scheme === 'basic') {
      if (!this.credentials) throw this.refused('the registry wants a user name and password; log in with "podman login" or "docker login"');
      this.authorization = basicAuth(this.credentials);
      return;
    }
    let realm: URL;
    try {
      realm = new URL(challenge.realm);
    } catch {
      throw this.refused(`the registry names the token service "${shown(challenge.realm, 80)}", which is not a URL`);
    }
    // Credentials go in plain HTTP only where the registry itself is spoken to so (loopback, or asked for).
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && this.base.startsWith('http:'))) {
      throw this.refused(`the registry names the token service ${realm.origin}, which is not HTTPS`);
    }
    if (challenge.service) realm.searchParams.set('service', challenge.service);
    realm.searchParams.set('scope', `repository:${this.ref.repository}:${this.actions}`);
    const headers: Record<string, string> = this.credentials ? { authorization: basicAuth(this.credentials) } : {};
    let answer: Buffer;
    try {
      answer = (await fetchSmallFile(this.ctx, 'registry token', realm.href, TOKEN_ANSWER, headers)).body!;
    } catch (error) {
      if (error instanceof HttpStatusError && error.status < 500) {
        throw new BoxbuildError('boxUnavailable', `${this.name}: the token service refuses ${this.credentials ? `the credentials in ${this.credentials.file}` : 'an anonymous login (log in with "podman login" or "docker login")'} (${error.message})`, { cause: error });
      }
      throw error;
    }
    let token: unknown;
    try {
      const parsed = JSON.parse(answer.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = parsed.token ?? parsed.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) throw this.refused('the token service answers without a token');
    this.authorization = `Bearer ${token}`;
  }

  /** A manifest or index, by tag or digest (then checked against it); at most 4 MiB. */
  async manifest(reference: string): Promise<FetchedManifest> {
    return (await this.findManifest(reference, false))!;
  }

  /** A manifest as manifest() fetches it, or undefined when the registry has none of that name (404). */
  async findManifest(reference: string, missingOk = true): Promise<FetchedManifest | undefined> {
    const url = this.url('manifests', reference);
    const fetch = () => this.authed((net) => fetchSmallFile(net, `manifest ${reference}`, url, MANIFEST_FILE, { accept: ACCEPT }));
    const response = await this.asking(`the manifest of ${this.name}:${reference}`, url, () =>
      fetch().catch((error: unknown) => {
        if (missingOk && error instanceof HttpStatusError && error.status === 404) return undefined;
        throw error;
      }),
    );
    if (!response) return undefined;
    const bytes = response.body!;
    const digest = sha256Digest(bytes);
    if (DIGEST.test(reference) && digest !== reference) throw this.refused(`the manifest served for ${reference} has the digest ${digest}`);
    return { bytes, digest };
  }

  /** A small blob (a config, a signature) in memory, checked against its descriptor. */
  async smallBlob(blob: { digest: string; size: number }, kind: SmallFile): Promise<Buffer> {
    const url = this.url('blobs', blob.digest);
    const bytes = (await this.asking(`the ${kind.what}`, url, () => this.authed((net) => fetchSmallFile(net, kind.what, url, kind)))).body!;
    if (sha256Digest(bytes) !== blob.digest || bytes.length !== blob.size) throw this.refused(`the ${kind.what} ${url} is not the blob ${blob.digest} its manifest names`);
    return bytes;
  }

  /** The digest of the manifest a tag names, by one HEAD request; undefined when the registry does not say it. */
  async manifestDigest(reference: string): Promise<string | undefined> {
    const url = this.url('manifests', reference);
    const response = await this.authed(async ({ client, signal }) => {
      const answer = await client.head(url, { headers: { accept: ACCEPT }, signal: requestSignal({ signal }) });
      if (answer.statusCode >= 300) throw failed(answer, url);
      return answer;
    });
    const digest = response.headers['docker-content-digest'];
    return typeof digest === 'string' && DIGEST.test(digest) ? digest : undefined;
  }

  /** Downloads a blob into `partial` (from `offset` on, resuming what is there), verified against its digest as it streams. */
  downloadBlob(digest: string, partial: string, label: string, offset = 0): Promise<DownloadResult> {
    const url = this.url('blobs', digest);
    return this.asking(label, url, () => this.authed((net) => downloadFile(net, url, partial, hexOf(digest), label, offset)));
  }

  async hasBlob(digest: string): Promise<boolean> {
    const url = this.url('blobs', digest);
    return this.authed(async ({ client, signal }) => {
      const answer = await client.head(url, { signal: requestSignal({ signal }) });
      if (answer.statusCode === 404) return false;
      if (answer.statusCode >= 300) throw failed(answer, url);
      return true;
    });
  }

  /**
   * Uploads a blob unless the registry has it (one POST, one PUT of the whole blob), retried as
   * downloads are; resolves with whether it was sent.
   */
  async uploadBlob(digest: string, size: number, open: () => Readable, label: string): Promise<boolean> {
    if (await this.hasBlob(digest)) return false;
    const start = `${this.base}/v2/${this.ref.repository}/blobs/uploads/`;
    await withRetries(this.ctx, label, () =>
      this.authed(async (net) => {
        const session = await net.client.post(start, { signal: requestSignal(net) });
        if (session.statusCode !== 202 || !session.headers.location) throw failed(session, start);
        const target = new URL(session.headers.location, this.base);
        target.searchParams.set('digest', digest);
        // An upload URL of another origin (a blob store) is presigned: the registry's authorization stays here.
        const client = target.origin === new URL(this.base).origin ? net.client : this.ctx.client;
        const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size) };
        const done = await client.put(target.href, { body: open(), headers, signal: requestSignal(net) });
        if (done.statusCode !== 201) throw failed(done, target.href);
      }),
    );
    return true;
  }

  async putManifest(reference: string, mediaType: string, bytes: Buffer): Promise<void> {
    const url = this.url('manifests', reference);
    await withRetries(this.ctx, `manifest ${reference}`, () =>
      this.authed(async ({ client, signal }) => {
        const done = await client.put(url, { body: bytes, headers: { 'content-type': mediaType }, signal: requestSignal({ signal }) });
        if (done.statusCode !== 201) throw failed(done, url);
      }),
    );
  }
}
