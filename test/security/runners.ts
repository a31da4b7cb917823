import { chownSync, cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { type ResultPromise, execa, execaSync } from 'execa';
import { expectNoLeftovers } from '../helpers/box-cli.js';
import type { CliResult } from '../helpers/cli.js';
import { CLI, TEST_CACHE } from '../helpers/env.js';
import { tempDir } from '../helpers/temp.js';
import { type Account, ensureUser, reachableCli, userEnvironment } from '../helpers/user.js';

interface Setup {
  /** The unprivileged account, or none when boxbuild runs as the test's own user. */
  account?: Account;
  cli: string;
  cache: string;
  /** Where the runner's workspaces and run directories go. */
  base: string;
}

/** Runs the boxbuild CLI as one kind of user; every run gets a private TMPDIR, checked for leftovers. */
export class Runner {
  private setup?: Setup;
  private preparing?: Promise<Setup>;

  constructor(
    private readonly name: string,
    private readonly makeSetup: () => Promise<Setup>,
  ) {}

  toString(): string {
    return this.name;
  }

  /** Sets the user, its CLI and its box cache up, once (call in beforeAll). */
  async prepare(): Promise<void> {
    this.setup = await (this.preparing ??= this.makeSetup());
  }

  private get ready(): Setup {
    if (!this.setup) throw new Error(`${this.name}: call prepare() first`);
    return this.setup;
  }

  ids(): { uid: number; gid: number } {
    const { account } = this.ready;
    return account ? { uid: account.uid, gid: account.gid } : { uid: process.getuid!(), gid: process.getgid!() };
  }

  /** A fresh directory the user owns. */
  workspace(): string {
    const dir = mkdtempSync(join(this.ready.base, 'ws-'));
    this.own(dir);
    return dir;
  }

  /** Hands a path and everything below it to the user. */
  own(path: string): void {
    const { uid, gid } = this.ids();
    execaSync('chown', ['-R', '--no-dereference', `${uid}:${gid}`, path]);
  }

  /** Starts boxbuild; `result` resolves once it ended and left no process or file in its TMPDIR. */
  start(args: string[]): { pid: number; child: ResultPromise; tmp: string; result: Promise<CliResult> } {
    const { account, cli, cache, base } = this.ready;
    const tmp = mkdtempSync(join(base, 'tmp-'));
    this.own(tmp);
    const user = account ? { uid: account.uid, gid: account.gid, env: userEnvironment(account, cache, tmp), extendEnv: false } : { env: { BOXBUILD_CACHE_DIR: cache, TMPDIR: tmp } };
    const child = execa(process.execPath, [cli, ...args], { reject: false, stdin: 'ignore', ...user });
    const result = child.then((done) => {
      expectNoLeftovers(tmp);
      return { exitCode: done.exitCode ?? -1, stdout: String(done.stdout), stderr: String(done.stderr) };
    });
    return { pid: child.pid!, child, tmp, result };
  }

  run(args: string[]): Promise<CliResult> {
    return this.start(args).result;
  }
}

export const asRoot = new Runner('root', async () => ({ cli: CLI, cache: TEST_CACHE, base: tempDir('bb-sec-') }));

export const asUnprivilegedUser = new Runner('an unprivileged user', async () => {
  const account = await ensureUser();
  const base = tempDir('bb-sec-user-');
  chownSync(base, account.uid, account.gid);
  // The test cache's debian box, copied into a cache of the user's own (warm states are saved there).
  const cache = join(base, 'cache');
  mkdirSync(join(cache, 'boxes'), { recursive: true });
  cpSync(join(TEST_CACHE, 'boxes/debian'), join(cache, 'boxes/debian'), { recursive: true, verbatimSymlinks: true });
  await execa('chown', ['-R', `${account.uid}:${account.gid}`, cache]);
  return { account, cli: await reachableCli(base), cache, base };
});

/** Both when the tests run as root (they can make the unprivileged user), else the test's own user only. */
export const RUNNERS = process.getuid!() === 0 ? [asRoot, asUnprivilegedUser] : [asRoot];
