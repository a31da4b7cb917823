import { join } from 'node:path';

/*
 * How the guest reaches the run's egress proxy: a guest forward of QEMU user networking. A TCP
 * connection of the guest to EGRESS_ADDRESS:EGRESS_PORT makes QEMU start CONNECTOR with the
 * connection on its stdin and stdout; the connector joins it to the egress proxy's Unix socket in
 * the run's private directory, whose path QEMU's environment holds (EGRESS_SOCKET_VARIABLE). The
 * forward is the same for every run (a VM's shape, hence its saved states, do not depend on the
 * run), and no TCP port is opened on the host: only this run's guest reaches its proxy.
 */

/** The proxy as the guest sees it (inside QEMU's 10.0.2.0/24, where nothing else is). */
export const EGRESS_ADDRESS = '10.0.2.100';
export const EGRESS_PORT = 3128;
export const EGRESS_URL = `http://${EGRESS_ADDRESS}:${EGRESS_PORT}`;

/** The variable in QEMU's environment that names the run's egress socket. */
export const EGRESS_SOCKET_VARIABLE = 'BOXBUILD_EGRESS_SOCKET';

/** The egress proxy's socket in a run's private directory. */
export const egressSocket = (runDir: string) => join(runDir, 'egress.sock');

/**
 * Copies stdin to the socket and the socket to stdout, each way in its own process (no deadlock
 * whatever either side does). Neither shuts the socket down, and when the proxy ends the connection
 * the process that copies its answer ends the other one too: the proxy decides how long a connector
 * lives (a guest that holds connections open holds no more processes than the proxy lets it), and
 * sees a connection end only once its connector is gone (a run ends with none left). The end of the
 * proxy's answer reaches the guest as a half-close; the guest's half-close is not passed on (HTTP
 * needs none). The other process is ended only while it is still this one's parent (its pid cannot
 * have been reused then). Perl is on every Debian system (perl-base is essential) and has
 * IO::Socket::UNIX. QEMU parses the command as a shell would (g_shell_parse_argv), so the program
 * is one single-quoted word: no ' inside.
 */
const PROGRAM = [
  'use IO::Socket::UNIX;',
  'my $s = IO::Socket::UNIX->new(Peer => $ENV{' + EGRESS_SOCKET_VARIABLE + '}) or die "boxbuild egress: $!\\n";',
  'sub copy { my ($from, $to) = @_; while ((my $n = sysread($from, my $b, 65536)) > 0) {',
  ' for (my $o = 0; $o < $n; ) { my $w = syswrite($to, $b, $n - $o, $o) or return; $o += $w } } }',
  'my $parent = $$;',
  'defined(my $pid = fork) or die "boxbuild egress: $!\\n";',
  'if ($pid) { copy(\\*STDIN, $s) }',
  'else { copy($s, \\*STDOUT); shutdown(STDOUT, 1); kill(9, $parent) if getppid() == $parent }',
].join(' ');

export const CONNECTOR = `perl -e '${PROGRAM}'`;

/** The guestfwd rule of QEMU's user network (before QEMU's comma escaping). */
export const EGRESS_GUESTFWD = `tcp:${EGRESS_ADDRESS}:${EGRESS_PORT}-cmd:${CONNECTOR}`;
