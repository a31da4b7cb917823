import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, test } from 'vitest';
import { fetchTestBox } from '../helpers/boxes.js';
import { bootableImage } from '../helpers/images.js';
import { type Runner, asRoot, asUnprivilegedUser } from './runners.js';

/*
 * A disk image that names host files (issue 25, part 2): `exec --image` of a qcow2 whose backing or
 * external data file is a file of the user's. QEMU would open it with the user's rights, and the
 * guest read it from its disk; boxbuild refuses such an image before QEMU starts.
 */

const runners = process.getuid!() === 0 ? [asRoot, asUnprivilegedUser] : [asRoot];

/** The guest reads the first sector of its disk (the image's own kernel and initrd leave loading virtio_blk to the command). */
const READ_DISK = ['sh', '-c', 'modprobe virtio_blk; i=0; until [ -b /dev/vda ] || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done; dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d "\\0"'];

describe.each(runners)('disk images that name host files, boxbuild run by %s', (runner: Runner) => {
  let dir: string;
  let secretFile: string;
  let secret: string;

  beforeAll(async () => {
    await fetchTestBox('debian', 'aarch64');
    await runner.prepare();
    dir = runner.workspace();
    secret = `SECRET-${randomBytes(8).toString('hex')}`;
    secretFile = join(dir, 'secret');
    writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
    runner.own(dir);
  });

  test('the control: a self-contained qcow2 of the same kind boots, and the guest reads its disk', { timeout: 240_000 }, async () => {
    const image = await bootableImage(dir, 'clean', 'CLEAN-IMAGE\n');
    runner.own(dir);
    const result = await runner.run(['exec', '--image', image, '-q', '--', ...READ_DISK]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('CLEAN-IMAGE');
  });

  /** Each kind of reference, planted as an attacker would: the image, and the name it holds. */
  const variants: [string, string, (name: string) => Promise<[image: string, reference: string]>][] = [
    [
      'a backing file',
      'backing file',
      async (name) => {
        const image = await bootableImage(dir, name);
        await execa('qemu-img', ['rebase', '-u', '-F', 'raw', '-b', secretFile, image]);
        return [image, secretFile];
      },
    ],
    [
      'a json: backing file',
      'backing file',
      async (name) => {
        const image = await bootableImage(dir, name);
        const json = `json:{"driver":"raw","file":{"driver":"file","filename":"${secretFile}"}}`;
        await execa('qemu-img', ['rebase', '-u', '-F', 'raw', '-b', json, image]);
        return [image, json];
      },
    ],
    [
      'an external data file',
      'external data file',
      async (name) => {
        // The guest's disk is then the user's file itself (data_file_raw), read by the preparing VM.
        const image = join(dir, `${name}.qcow2`);
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${image}.data,data_file_raw=on`, image, '64M']);
        await execa('qemu-img', ['amend', '-o', `data_file=${secretFile}`, image]);
        return [image, secretFile];
      },
    ],
  ];

  test.each(variants)('exec --image of a qcow2 naming %s: exit 2, one line, before QEMU starts; the file is never shown', { timeout: 240_000 }, async (_, what, plant) => {
    const [image, reference] = await plant(`evil-${what.replaceAll(' ', '-')}-${randomBytes(2).toString('hex')}`);
    runner.own(dir);
    const result = await runner.run(['exec', '--image', image, '--', ...READ_DISK]);
    expect(result.stdout + result.stderr).not.toContain(secret);
    expect(result.stderr).toBe(`boxbuild: error: ${image} names another file as its ${what} (${reference}); boxbuild opens only self-contained images`);
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
  });
});
