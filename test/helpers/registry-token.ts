import { X509Certificate, createSign, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { execa } from 'execa';
import { listenLocal } from './http.js';

/** One request to the token server. */
export interface TokenRequest {
  /** The scopes asked for, e.g. "repository:t/x:pull,push" (none: a login). */
  scopes: string[];
  /** Whether it came with HTTP Basic credentials (right or wrong). */
  credentials: boolean;
  /** 200 (a token) or 401. */
  status: number;
}

export interface TokenServer {
  /** The registry's `auth.token` settings that name this server. */
  registryConfig: { realm: string; service: string; issuer: string; rootcertbundle: string };
  user: string;
  password: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

const SERVICE = 'boxbuild-test';
const ISSUER = 'boxbuild-test-issuer';
const TOKEN_SECONDS = 300;

const base64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** "repository:NAME:pull,push" → the access entry of a JWT (NAME may hold colons: the last one ends it). */
function access(scope: string): { type: string; name: string; actions: string[] } | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last <= first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',').filter(Boolean) };
}

function basicCredentials(request: IncomingMessage): { user: string; password: string } | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match) return undefined;
  const pair = Buffer.from(match[1]!, 'base64').toString();
  const colon = pair.indexOf(':');
  return colon < 0 ? undefined : { user: pair.slice(0, colon), password: pair.slice(colon + 1) };
}

/**
 * The token server of a private registry (distribution's "token" auth): in exchange for the right
 * user and password, a JWT granting every action asked for, signed with a key whose self-signed
 * certificate the registry trusts (its `rootcertbundle`) and which the token names in `x5c`.
 * Anonymous or wrong credentials get 401. Its key and certificate are made in `dir`.
 */
export async function startTokenServer(dir: string): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=boxbuild-test-token', '-days', '2', '-keyout', keyFile, '-out', certFile]);
  const key = await readFile(keyFile);
  const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [new X509Certificate(await readFile(certFile)).raw.toString('base64')] }));
  const user = 'boxbuild';
  const password = randomBytes(12).toString('hex');
  const requests: TokenRequest[] = [];

  const sign = (sub: string, service: string, scopes: string[]) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: ISSUER,
      sub,
      aud: service,
      exp: now + TOKEN_SECONDS,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access: scopes.map(access).filter((entry) => entry !== undefined),
    };
    const input = `${header}.${base64url(JSON.stringify(claims))}`;
    return `${input}.${base64url(createSign('RSA-SHA256').update(input).sign(key))}`;
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://token');
    if (request.method !== 'GET' || url.pathname !== '/token') return void response.writeHead(404).end();
    // Several scope parameters, or several scopes in one separated by spaces: both are in use.
    const scopes = url.searchParams.getAll('scope').flatMap((scope) => scope.split(' ').filter(Boolean));
    const given = basicCredentials(request);
    const status = given?.user === user && given.password === password ? 200 : 401;
    requests.push({ scopes, credentials: given !== undefined, status });
    if (status === 401) {
      response.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Basic realm="${SERVICE}"` });
      return void response.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    }
    // The audience is the service asked for: a token for another service is one the registry refuses.
    const token = sign(user, url.searchParams.get('service') ?? SERVICE, scopes);
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ token, access_token: token, expires_in: TOKEN_SECONDS, issued_at: new Date().toISOString() }));
  };

  const server = await listenLocal(handle);
  return {
    registryConfig: { realm: `${server.url}/token`, service: SERVICE, issuer: ISSUER, rootcertbundle: certFile },
    user,
    password,
    requests,
    stop: () => server.close(),
  };
}
