import type { Command } from 'commander';
import { cacheRoot } from '../box/cache.js';
import { notice } from './common.js';

/** `boxbuild doctor [--json] [--host HOST]`: exit 1 when something every run needs is missing. */
export function addDoctorCommand(program: Command, signal: AbortSignal, done: (status: number) => void): void {
  program
    .command('doctor')
    .description('Show what works on this host (or a build host) and what is missing, with the command that fixes each')
    .option('--json', 'print the checks as JSON')
    .option('--host <[user@]host[:port]>', 'check this build host over SSH instead, and that it runs the same boxbuild')
    .option('--no-host', 'check this host (over a config file\'s host)')
    .exitOverride()
    .action(async (flags: { json?: boolean; host?: string | false }) => {
      if (flags.host) {
        const { parseHostSpec } = await import('../driver/remote/host.js');
        const { remoteDoctor } = await import('../driver/remote/client.js');
        const io = { stdout: process.stdout, stderr: process.stderr, notice: notice(), signal };
        return done(await remoteDoctor(io, parseHostSpec(flags.host), flags.json ?? false));
      }
      const { runChecks } = await import('../doctor/checks.js');
      const checks = await runChecks(cacheRoot());
      if (flags.json) process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
      else {
        const width = Math.max(...checks.map((check) => check.name.length));
        for (const check of checks) {
          process.stdout.write(`${check.verdict.padEnd(7)} ${check.name.padEnd(width)}  ${check.detail}\n`);
          if (check.fix && check.verdict !== 'ok') process.stdout.write(`${' '.repeat(8)}fix: ${check.fix}\n`);
        }
      }
      done(checks.some((check) => check.required && check.verdict === 'missing') ? 1 : 0);
    });
}
