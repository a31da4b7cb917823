import { Command } from 'commander';
import { describe, expect, test } from 'vitest';
import { remoteOptions } from '../../../src/cli/remote.js';
import type { Config } from '../../../src/config/config.js';

/** A command with the kinds of options the root command has. */
function parsed(own: string[]): Command {
  const collect = (value: string, list: string[] = []) => [...list, value];
  const command = new Command()
    .exitOverride()
    .option('--box <name>')
    .option('--arch <arch>')
    .option('--host <host>')
    .option('--no-host')
    .option('--result <file>')
    .option('-e, --env <spec>', '', collect)
    .option('-q, --quiet')
    .option('-v, --verbose')
    .option('--no-update-check');
  return command.parse(own, { from: 'user' });
}

const config = (settings: Record<string, unknown>): Config => ({ settings: Object.fromEntries(Object.entries(settings).map(([name, value]) => [name, { value, from: 'c.json' }])), skipped: [] });

describe('the options a --host run sends to the build host', () => {
  test('--host, --result and --env stay here (the variables go apart), the rest goes as given', () => {
    const own = ['--host=me@h', '-qv', '--box', 'debian', '-eNAME', '--result', 'r.json', '--no-update-check', '-qe', 'X=1', '--env', 'Y'];
    expect(remoteOptions(parsed(own), own, config({}))).toEqual(['-q', '-v', '--box', 'debian', '--no-update-check', '-q']);
  });

  test("the config files' settings go first, but those the command line overrides, registries and host", () => {
    const own = ['--box', 'other'];
    const command = parsed(own);
    const settings = config({ box: 'debian', arch: 'aarch64', registries: ['/here/boxes.json'], host: 'h', network: false });
    expect(remoteOptions(command, own, settings)).toEqual(['--arch', 'aarch64', '--no-network', '--box', 'other']);
  });
});
