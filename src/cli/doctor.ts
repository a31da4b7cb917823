import type { Command } from 'commander';
import { cacheRoot } from '../box/cache.js';

/** `boxbuild doctor [--json]`: exit 1 when something every run needs is missing. */
export function addDoctorCommand(program: Command, done: (status: number) => void): void {
  program
    .command('doctor')
    .description('Show what works on this host and what is missing, with the command that fixes each')
    .option('--json', 'print the checks as JSON')
    .exitOverride()
    .action(async (flags: { json?: boolean }) => {
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
