import type { Agent } from 'node:http';
import got, { type Agents, type Got, RequestError } from 'got';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';
import { getProxyForUrl } from 'proxy-from-env';
import { usageError } from '../errors.js';
import { VERSION } from '../version.js';
import { TooSlowError } from './meter.js';

/** Timeouts and retry policy of box downloads; tests make them short. */
export interface NetOptions {
  /** Limit for establishing a connection (DNS lookup, TCP and TLS). */
  connectTimeoutMs: number;
  /** Limit for a connection on which nothing arrives (while waiting for headers or body). */
  idleTimeoutMs: number;
  /** Retries of one file from one mirror after a network error, a timeout or a 5xx answer. */
  retries: number;
  /** Backoff before the first retry; doubles for each further one, up to maxBackoffMs. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Limit for the whole update check of one box (it is skipped with a warning on expiry). */
  updateCheckTimeoutMs: number;
  /** Limit for fetching a small file (a checksum sidecar, a signature, a package list), all its retries included. */
  smallFileTimeoutMs: number;
  /** The largest file a box may have (BOXBUILD_MAX_DOWNLOAD); a server sending more is cut off. */
  maxBytes: number;
  /** Bytes per second a download must average over each slow window (BOXBUILD_MIN_RATE; 0: no minimum). */
  minRate: number;
  slowWindowMs: number;
}

export const DEFAULT_NET: NetOptions = {
  connectTimeoutMs: 15_000,
  idleTimeoutMs: 30_000,
  retries: 5,
  minBackoffMs: 1_000,
  maxBackoffMs: 30_000,
  updateCheckTimeoutMs: 10_000,
  smallFileTimeoutMs: 60_000,
  maxBytes: 16 * 2 ** 30,
  minRate: 1024,
  slowWindowMs: 60_000,
};

/** A byte count as BOXBUILD_MAX_DOWNLOAD and BOXBUILD_MIN_RATE take it: 20G, 512M, 10K, 4096 (bytes). */
export function parseByteCount(text: string, variable: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  if (!match) throw usageError(`${variable}: "${text}" is not a size (examples: 20G, 512M, 10K)`);
  return Math.floor(Number(match[1]) * 1024 ** ' kmgt'.indexOf((match[2] || ' ').toLowerCase()));
}

/** The download limits the environment sets: BOXBUILD_MAX_DOWNLOAD, BOXBUILD_MIN_RATE. */
export function netFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<NetOptions> {
  const net: Partial<NetOptions> = {};
  if (env.BOXBUILD_MAX_DOWNLOAD) net.maxBytes = parseByteCount(env.BOXBUILD_MAX_DOWNLOAD, 'BOXBUILD_MAX_DOWNLOAD');
  if (env.BOXBUILD_MIN_RATE) net.minRate = parseByteCount(env.BOXBUILD_MIN_RATE, 'BOXBUILD_MIN_RATE');
  return net;
}

/** An answer with a status that is not a success (4xx are final, 5xx are retried). */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    statusText: string | undefined,
    readonly url: string,
    /** A 401's WWW-Authenticate: what the server wants to be asked with. */
    readonly challenge?: string,
  ) {
    super(`HTTP ${status}${statusText ? ` ${statusText}` : ''}`);
    this.name = 'HttpStatusError';
  }
}

/** A body that ended before the length the server announced (the connection closed early). */
export class TruncatedError extends Error {
  constructor(received: number, expected: number) {
    super(`the connection closed after ${received} of ${expected} bytes`);
    this.name = 'TruncatedError';
  }
}

/**
 * Errors of got that say the request itself is wrong (a redirect to `file:`, a redirect loop, a
 * bad URL, a malformed answer, a certificate that does not verify): asking again cannot help.
 */
const PERMANENT_CODES = /^(ERR_UNSUPPORTED_PROTOCOL|ERR_TOO_MANY_REDIRECTS|ERR_INVALID_URL|ERR_INVALID_PROTOCOL|HPE_.*|CERT_.*|ERR_TLS_CERT_.*|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_.*)$/;

/** Whether a failed request is worth repeating: network errors, timeouts, trickling and 5xx; never 4xx nor protocol errors. */
export function isTransient(error: unknown): boolean {
  if (error instanceof HttpStatusError) return error.status >= 500;
  if (error instanceof RequestError) return !PERMANENT_CODES.test(error.code ?? '');
  return error instanceof TruncatedError || error instanceof TooSlowError;
}

const proxyAgents = new Map<string, Agents>();

/** The agents that send a request for `url` through the proxy HTTP(S)_PROXY names (none when NO_PROXY matches). */
export function agentsFor(url: string): Agents | undefined {
  const proxy = getProxyForUrl(url);
  if (!proxy) return undefined;
  let agents = proxyAgents.get(proxy);
  if (!agents) {
    const options = { proxy, keepAlive: true };
    agents = { http: new HttpProxyAgent(options) as Agent, https: new HttpsProxyAgent(options) };
    proxyAgents.set(proxy, agents);
  }
  return agents;
}

/**
 * The got instance for box files: raw bytes (no decompression, so ranges and checksums hold),
 * no retries of its own (p-retry decides), connect and idle timeouts, and the proxy the
 * environment names for each URL, redirects included.
 */
export function httpClient(net: NetOptions): Got {
  return got.extend({
    decompress: false,
    retry: { limit: 0 },
    throwHttpErrors: false,
    timeout: { lookup: net.connectTimeoutMs, connect: net.connectTimeoutMs, secureConnect: net.connectTimeoutMs, socket: net.idleTimeoutMs },
    headers: { 'user-agent': `boxbuild/${VERSION}` },
    hooks: {
      // Runs before every request, redirects included: each URL gets the proxy (or none) the environment names for it.
      beforeRequest: [
        (options) => {
          options.agent = agentsFor(String(options.url)) ?? {};
        },
      ],
    },
  });
}
