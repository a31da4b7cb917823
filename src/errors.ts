/** Exit codes boxbuild uses for its own failures; anything else is the build's own exit status. */
export const ExitCode = {
  /** Bad input: unknown option or box, missing `--`, bad paths. */
  usage: 2,
  /** boxbuild itself failed unexpectedly (a bug). */
  internal: 70,
  /** The box could not be made, fetched or verified. */
  boxUnavailable: 69,
  /** The Redis of --queue cannot be reached or refused us (EX_UNAVAILABLE, as a box that cannot be had). */
  queueUnavailable: 69,
  /** --container: podman is missing or cannot run here (EX_UNAVAILABLE, as a box that cannot be had). */
  containerUnavailable: 69,
  /** QEMU could not start, or the guest never became ready (boot timeout, panic during boot). */
  vmFailed: 71,
  /** The guest stopped (crash, poweroff) without reporting the build's exit status. */
  guestLost: 76,
  /** --host: the build host cannot be reached, has no boxbuild, or another version of it. */
  hostUnavailable: 69,
  /** --host: the connection to the build host was lost during the run, or the host failed or broke the protocol. */
  hostLost: 76,
  /** stdout or stderr could not be written (a full disk, an I/O error): EX_IOERR of sysexits.h. */
  ioError: 74,
  /** `--timeout` expired and the VM was killed. */
  timeout: 124,
  /** stdout or stderr was closed (the reader went away), as SIGPIPE would end a shell tool (128 + 13). */
  brokenPipe: 141,
  /** Interrupted by SIGINT (128 + 2) */
  interrupted: 130,
  /** Terminated by SIGTERM (128 + 15) */
  terminated: 143,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

/** An error meant for the user: one clear line, a distinct exit code, optional detail lines. */
export class BoxbuildError extends Error {
  /** What failed, e.g. `boxUnavailable`, `timeout`, `interrupted`. */
  readonly kind: ExitCodeName;
  /** The exit code the command line ends with for it. */
  readonly exitCode: number;
  readonly detail?: string;

  constructor(kind: ExitCodeName, message: string, options: { detail?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'BoxbuildError';
    this.kind = kind;
    this.exitCode = ExitCode[kind];
    this.detail = options.detail;
  }
}

export const usageError = (message: string) => new BoxbuildError('usage', message);
