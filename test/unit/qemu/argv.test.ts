import { describe, expect, test } from 'vitest';
import { type VmSpec, buildQemuArgs, consoleName, deviceArgs } from '../../../src/qemu/argv.js';
import { CONNECTOR } from '../../../src/qemu/egress-link.js';
import { PROFILES } from '../../../src/qemu/profiles.js';
import { confinedCommand, unshareOptions } from '../../../src/sharing/confine.js';
import { ninePGuestMount, ninePQemuArgs } from '../../../src/sharing/ninep.js';
import { sftpServerArgs, sshfsGuestMount } from '../../../src/sharing/sshfs.js';
import { virtiofsDevice, virtiofsdArgs } from '../../../src/sharing/virtiofs.js';

const spec = (overrides: Partial<VmSpec> = {}): VmSpec => ({
  profile: PROFILES.x86_64,
  accel: 'tcg',
  memoryMiB: 1024,
  cpus: 2,
  kernel: '/box/kernel',
  initrd: '/box/initrd',
  cmdline: 'console=ttyS0 panic=-1',
  consoleSocket: '/run/x/console.sock',
  console: 'serial',
  ports: [{ name: 'org.boxbuild.ctl', socket: '/run/x/ctl.sock' }],
  ...overrides,
});

/** The values that follow each occurrence of a flag. */
const valuesOf = (args: string[], flag: string) => args.flatMap((arg, i) => (arg === flag ? [args[i + 1]] : []));

describe('buildQemuArgs', () => {
  test('x86_64 under TCG: pc machine without HPET, multi-threaded TCG, no network, never reboots', () => {
    const args = buildQemuArgs(spec());
    expect(valuesOf(args, '-machine')).toEqual(['pc,hpet=off']);
    expect(valuesOf(args, '-accel')).toEqual(['tcg,thread=multi']);
    expect(valuesOf(args, '-cpu')).toEqual(['max']);
    expect(valuesOf(args, '-m')).toEqual(['1024M']);
    expect(valuesOf(args, '-smp')).toEqual(['2']);
    expect(valuesOf(args, '-nic')).toEqual(['none']);
    expect(args).toContain('-no-reboot');
    expect(args).toContain('-nodefaults');
    expect(valuesOf(args, '-kernel')).toEqual(['/box/kernel']);
    expect(valuesOf(args, '-initrd')).toEqual(['/box/initrd']);
    expect(valuesOf(args, '-append')).toEqual(['console=ttyS0 panic=-1']);
  });

  test('KVM uses the host CPU', () => {
    const args = buildQemuArgs(spec({ accel: 'kvm' }));
    expect(valuesOf(args, '-accel')).toEqual(['kvm']);
    expect(valuesOf(args, '-cpu')).toEqual(['host']);
  });

  test('console on the serial port or on hvc0, ports on the virtio-serial bus', () => {
    const serial = buildQemuArgs(spec());
    expect(valuesOf(serial, '-serial')).toEqual(['chardev:console']);
    expect(valuesOf(serial, '-chardev')).toEqual(['socket,id=console,path=/run/x/console.sock', 'socket,id=port0,path=/run/x/ctl.sock']);
    expect(valuesOf(serial, '-device')).toContain('virtserialport,bus=vser.0,chardev=port0,name=org.boxbuild.ctl');
    const hvc = buildQemuArgs(spec({ console: 'hvc0' }));
    expect(valuesOf(hvc, '-serial')).toEqual([]);
    expect(valuesOf(hvc, '-device')).toContain('virtconsole,bus=vser.0,chardev=console');
    expect(consoleName({ profile: PROFILES.x86_64, console: 'serial' })).toBe('ttyS0');
    expect(consoleName({ profile: PROFILES.aarch64, console: 'serial' })).toBe('ttyAMA0');
  });

  test('commas in paths are escaped for QEMU', () => {
    const args = buildQemuArgs(spec({ consoleSocket: '/tmp/a,b/console.sock' }));
    expect(valuesOf(args, '-chardev')[0]).toBe('socket,id=console,path=/tmp/a,,b/console.sock');
  });

  test('shared memory for vhost-user backends', () => {
    const args = buildQemuArgs(spec({ sharedMemory: true }));
    expect(valuesOf(args, '-object')).toEqual(['memory-backend-memfd,id=mem,size=1024M,share=on']);
    expect(valuesOf(args, '-machine')).toContain('memory-backend=mem');
  });

  test('hot-plug slots: a PCI Express root port each on aarch64, none needed on the PC machine', () => {
    expect(valuesOf(buildQemuArgs(spec({ hotplugSlots: 2 })), '-device').filter((d) => d.startsWith('pcie-root-port'))).toEqual([]);
    const arm = buildQemuArgs(spec({ profile: PROFILES.aarch64, hotplugSlots: 2 }));
    expect(valuesOf(arm, '-device').filter((d) => d.startsWith('pcie-root-port'))).toEqual(['pcie-root-port,id=hotplug0,chassis=1', 'pcie-root-port,id=hotplug1,chassis=2']);
  });

  test('shared memory in a file: the RAM file wins over memfd (a warm VM with virtiofs)', () => {
    const args = buildQemuArgs(spec({ sharedMemory: true, ramFile: { path: '/run/x/ram', shared: true } }));
    expect(valuesOf(args, '-object')).toEqual(['memory-backend-file,id=mem,size=1024M,mem-path=/run/x/ram,share=on']);
  });

  test('warm start: RAM in a file, written through when booting to save, mapped copy-on-write when restoring', () => {
    const booting = buildQemuArgs(spec({ ramFile: { path: '/run/x/ram', shared: true } }));
    expect(valuesOf(booting, '-object')).toEqual(['memory-backend-file,id=mem,size=1024M,mem-path=/run/x/ram,share=on']);
    expect(valuesOf(booting, '-machine')).toContain('memory-backend=mem');
    expect(booting).not.toContain('-incoming');
    const restoring = buildQemuArgs(spec({ ramFile: { path: '/c/states/s.d/1/ram', shared: false }, incoming: true }));
    expect(valuesOf(restoring, '-object')).toEqual(['memory-backend-file,id=mem,size=1024M,mem-path=/c/states/s.d/1/ram,share=off']);
    expect(valuesOf(restoring, '-incoming')).toEqual(['defer']);
  });

  test('disks: every layer and its format given, a qcow2 chain ended by backing null; and user networking', () => {
    const args = buildQemuArgs(
      spec({
        disks: [
          { path: '/run/x/overlay.qcow2', format: 'qcow2', backing: { path: '/img/a,b.qcow2', format: 'qcow2' }, cache: 'unsafe' },
          { path: '/b/base,1.raw', format: 'raw', cache: 'writeback', readOnly: true },
        ],
        network: 'full',
      }),
    );
    expect(valuesOf(args, '-drive')).toEqual([]);
    expect(valuesOf(args, '-blockdev').map((node) => JSON.parse(node!))).toEqual([
      {
        'node-name': 'disk0',
        driver: 'qcow2',
        cache: { direct: false, 'no-flush': true },
        file: { driver: 'file', filename: '/run/x/overlay.qcow2' },
        backing: { driver: 'qcow2', file: { driver: 'file', filename: '/img/a,b.qcow2' }, backing: null },
      },
      { 'node-name': 'disk1', driver: 'raw', cache: { direct: false, 'no-flush': false }, 'read-only': true, file: { driver: 'file', filename: '/b/base,1.raw' } },
    ]);
    expect(valuesOf(args, '-device')).toContain('virtio-blk-pci,drive=disk1');
    expect(valuesOf(args, '-netdev')).toEqual([`user,id=net0,guestfwd=tcp:10.0.2.100:3128-cmd:${CONNECTOR.replaceAll(',', ',,')}`]);
    expect(valuesOf(args, '-device')).toContain('virtio-net-pci,netdev=net0,romfile=');
    expect(valuesOf(args, '-nic')).toEqual([]);
  });

  test('the filtered network: restricted, IPv4 only, the egress forward the same for every run; the forward may start its connector', () => {
    const filtered = buildQemuArgs(spec({ network: 'filtered' }));
    expect(valuesOf(filtered, '-netdev')[0]).toMatch(/^user,id=net0,restrict=on,ipv6=off,guestfwd=tcp:10\.0\.2\.100:3128-cmd:perl -e '[^']+'$/);
    expect(valuesOf(filtered, '-sandbox')).toEqual(['on,obsolete=deny,resourcecontrol=deny']);
    expect(valuesOf(buildQemuArgs(spec()), '-sandbox')).toEqual(['on,obsolete=deny,resourcecontrol=deny,spawn=deny']);
    expect(buildQemuArgs(spec({ network: 'filtered', consoleSocket: '/run/other/console.sock' })).filter((arg) => arg.startsWith('user,'))).toEqual(valuesOf(filtered, '-netdev'));
  });

  test.each([
    ['s390x', 'qemu-system-s390x', 's390-ccw-virtio', 'max', 'virtio-serial-ccw', 'ttysclp0'],
    ['ppc64le', 'qemu-system-ppc64', 'pseries', 'power9', 'virtio-serial-pci', 'hvc0'],
    ['riscv64', 'qemu-system-riscv64', 'virt', 'rv64', 'virtio-serial-pci', 'ttyS0'],
  ] as const)('%s profile: binary, machine, TCG CPU, bus, console', (arch, binary, machine, cpu, serialBus, console) => {
    const profile = PROFILES[arch];
    const args = buildQemuArgs(spec({ profile }));
    expect(profile.qemuBinary).toBe(binary);
    expect(valuesOf(args, '-machine')).toEqual([machine]);
    expect(valuesOf(args, '-cpu')).toEqual([cpu]);
    expect(valuesOf(args, '-device')).toContain(`${serialBus},id=vser`);
    expect(consoleName({ profile, console: 'serial' })).toBe(console);
  });

  test('aarch64 uses the virt machine and a CPU model that emulates fast', () => {
    const args = buildQemuArgs(spec({ profile: PROFILES.aarch64 }));
    expect(valuesOf(args, '-machine')[0]).toMatch(/^virt/);
    expect(valuesOf(args, '-cpu')).toEqual(['cortex-a57']);
  });
});

describe('9p share', () => {
  const share = { tag: 'description', hostPath: '/home/u/desc', guestPath: '/description', readOnly: true };

  test('read-only share: readonly fsdev, files owned by the invoking user', () => {
    expect(ninePQemuArgs(share, 0, PROFILES.x86_64)).toEqual([
      '-fsdev',
      'local,id=fs0,path=/home/u/desc,security_model=none,multidevs=remap,readonly=on',
      '-device',
      'virtio-9p-pci,fsdev=fs0,mount_tag=description',
    ]);
    expect(ninePGuestMount(share)).toEqual({
      modules: ['9pnet_virtio', '9p'],
      fstype: '9p',
      source: 'description',
      target: '/description',
      options: 'trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro',
    });
  });

  test('written share: no readonly flag, no data cache', () => {
    const target = { ...share, tag: 'target', readOnly: false };
    expect(ninePQemuArgs(target, 1, PROFILES.s390x)[3]).toBe('virtio-9p-ccw,fsdev=fs1,mount_tag=target');
    expect(ninePQemuArgs(target, 1, PROFILES.x86_64)[1]).not.toContain('readonly');
    expect(ninePGuestMount(target).options).toContain('cache=mmap,rw');
  });
});

describe('virtiofs and sshfs shares', () => {
  const share = { tag: 'target', hostPath: '/home/u/out', guestPath: '/target', readOnly: false };
  const context = { runDir: '/run/x', profile: PROFILES.x86_64 };

  test('Debian 12 C daemon and the Rust daemon get their own option syntax', () => {
    const c = { path: '/usr/lib/qemu/virtiofsd', flavor: 'c' as const };
    const rust = { path: '/usr/libexec/virtiofsd', flavor: 'rust' as const };
    expect(virtiofsdArgs(c, '/r/v.sock', share)).toEqual([
      '/usr/lib/qemu/virtiofsd', '--socket-path=/r/v.sock', '-o', 'source=/home/u/out', '-o', 'cache=auto', '-o', 'sandbox=namespace', '-o', 'no_xattr',
    ]);
    expect(virtiofsdArgs(rust, '/r/v.sock', { ...share, readOnly: true })).toEqual([
      '/usr/libexec/virtiofsd', '--socket-path=/r/v.sock', '--shared-dir=/home/u/out', '--cache=always', '--sandbox=none',
    ]);
  });

  test("commas and backslashes in a share path survive the C daemon's -o syntax", () => {
    const c = { path: '/usr/lib/qemu/virtiofsd', flavor: 'c' as const };
    expect(virtiofsdArgs(c, '/r/v.sock', { ...share, hostPath: '/a,b\\c' })[3]).toBe('source=/a\\,b\\\\c');
  });

  test('vhost-user-fs device on the machine bus, on the command line or plugged in over QMP', () => {
    const device = virtiofsDevice(share, 2, '/r/v,s.sock', context);
    expect(deviceArgs(device)).toEqual([
      '-chardev', 'socket,id=vfs2,path=/r/v,,s.sock', '-device', 'vhost-user-fs-pci,id=vfsdev2,chardev=vfs2,queue-size=1024,tag=target',
    ]);
    // QMP's device_add checks property types: the queue size stays a number.
    expect(device).toEqual({ chardev: { id: 'vfs2', path: '/r/v,s.sock' }, driver: 'vhost-user-fs-pci', id: 'vfsdev2', props: { 'queue-size': 1024, tag: 'target' } });
    expect(deviceArgs(virtiofsDevice(share, 0, '/r/v.sock', { ...context, profile: PROFILES.s390x }))[3]).toMatch(/^vhost-user-fs-ccw,/);
  });

  test('sftp-server is read-only for read-only shares; sshfs mounts over the port of the share', () => {
    expect(sftpServerArgs('/usr/lib/openssh/sftp-server', { ...share, readOnly: true })).toEqual(['/usr/lib/openssh/sftp-server', '-e', '-d', '/share', '-l', 'ERROR', '-R']);
    expect(sftpServerArgs('/s', share)).not.toContain('-R');
    expect(sshfsGuestMount(share)).toMatchObject({ modules: ['fuse'], fstype: 'sshfs', source: `org.boxbuild.sftp.${share.tag}`, target: '/target' });
    expect(sshfsGuestMount(share).options.split(',')).toContain('passive');
  });

  test('confinement: always a user, mount and PID namespace (root too); paths travel as parameters', () => {
    const argv = confinedCommand({ namespacing: { kind: 'subids', uids: { start: 100000, count: 65536 }, gids: { start: 200000, count: 10 } }, share: "/a b/'$(x)", readOnly: true, privateRun: true }, ['daemon', '--x']);
    const unshare = argv.indexOf('unshare');
    // As root, supplementary groups are cleared first: a user namespace cannot drop them.
    expect(argv.slice(0, unshare)).toEqual(process.getuid!() === 0 ? ['setpriv', '--clear-groups', '--'] : []);
    expect(argv.slice(unshare, unshare + 4)).toEqual(['unshare', '--map-root-user', '--map-users=100000,1,65536', '--map-groups=200000,1,10']);
    expect(argv.slice(-7)).toEqual(['boxbuild-confine', 'ro', "/a b/'$(x)", 'private-run', '-', 'daemon', '--x']);
    expect(argv.find((word) => word.startsWith('set -eu'))).not.toContain('$(x)');
    expect(unshareOptions({ kind: 'self' })).toEqual(['--map-root-user', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc']);
  });
});
