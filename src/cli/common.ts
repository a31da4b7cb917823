import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The user's registry files: ~/.config/boxbuild/boxes.json, $BOXBUILD_BOXES, then each --boxes. */
export function registryFiles(flags: { boxes?: string[] }): string[] {
  const configHome = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  const user = join(configHome, 'boxbuild', 'boxes.json');
  return [...(existsSync(user) ? [user] : []), ...(process.env.BOXBUILD_BOXES ? [process.env.BOXBUILD_BOXES] : []), ...(flags.boxes ?? [])];
}

export const notice = (quiet?: boolean) => (line: string) => {
  if (!quiet) process.stderr.write(`boxbuild: ${line}\n`);
};

/** Collects a repeatable option's values. */
export const collect = (value: string, list: string[] = []) => [...list, value];
