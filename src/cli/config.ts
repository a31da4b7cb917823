import type { Command } from 'commander';
import { type Config, SETTINGS, describeSkipped } from '../config/config.js';

/** `boxbuild config`: each setting's effective value and where it came from, and the files skipped. */
export function addConfigCommand(program: Command, config: Config): void {
  program
    .command('config')
    .description('Show the settings of the config files (user: ~/.config/boxbuild/config.json, project: .boxbuild.json here or above) and where each came from')
    .option('--json', 'print them as JSON')
    .exitOverride()
    .action((flags: { json?: boolean }) => {
      const rows = Object.entries(SETTINGS).map(([name, setting]) => {
        const option = program.options.find((o) => o.attributeName() === setting.key);
        const set = config.settings[name];
        // A --no-X option's default is true without being declared.
        const value = set ? set.value : (option?.defaultValue ?? (option?.negate ? true : undefined));
        return { name, option: setting.option, value: value ?? null, from: set ? set.from : value === undefined ? 'unset' : 'default' };
      });
      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ settings: rows, skipped: config.skipped }, null, 2)}\n`);
        return;
      }
      const width = Math.max(...rows.map((row) => row.name.length));
      for (const row of rows) process.stdout.write(`${row.name.padEnd(width)}  ${JSON.stringify(row.value).padEnd(10)}  ${row.from}\n`);
      for (const skipped of config.skipped) process.stdout.write(`${describeSkipped(skipped)}\n`);
    });
}
