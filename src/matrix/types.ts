import type { Arch } from '../box/arch.js';

/*
 * A build matrix: what `boxbuild matrix FILE` reads, what each build is once the file's arrays are
 * expanded, and what a build became. The local slots (src/matrix/local.ts) and the BullMQ workers
 * (src/matrix/queue/) run the same MatrixBuild with the same runBuild (src/matrix/build.ts) and
 * return the same BuildResult, from which src/matrix/report/ writes results.json, JUnit XML and
 * the HTML report.
 */

/** One build of an expanded matrix: a boxbuild run, as the command line would be given it. */
export interface MatrixBuild {
  /** Stable across runs of the same matrix file (box, arch, description and arguments, hashed): the key of the change against the previous run. */
  id: string;
  /** For people: "debian x86_64 examples/hello". */
  name: string;
  /** The description as the matrix file names it, and the build arguments: with the box, the report's row. */
  label: string;
  box: string;
  arch: Arch;
  /** The description directory (absolute), shared read-only. */
  description: string;
  /** Build arguments after `--` besides --description/--target-dir. */
  args: string[];
  /** Where this build's target goes (absolute): <results>/builds/<id>/target unless the file names one. */
  target?: string;
  /** Box registry files besides the bundled one and the user's, as --boxes (absolute). */
  registryFiles?: string[];
  /** Seconds, as --timeout. */
  timeoutSeconds?: number;
  /** How often a failed build is tried again (0: once). */
  retries: number;
  tags: string[];
}

export type BuildStatus = 'passed' | 'failed' | 'error' | 'timeout' | 'cancelled';

/** What a build became. */
export interface BuildResult {
  id: string;
  name: string;
  label: string;
  box: string;
  arch: Arch;
  tags: string[];
  status: BuildStatus;
  /** boxbuild's exit status of the last attempt (the build's own, or one of boxbuild's codes). */
  exitCode?: number;
  /** boxbuild's own error line, when it ended with one. */
  error?: string;
  attempts: number;
  startedAt: string;
  durationSeconds: number;
  /** The whole log of the last attempt (absolute path; "" when the build never started) and its last lines. */
  log: string;
  logTail: string[];
  /** The `--result` account of the last attempt (provenance: box version, accelerator, sharing...), and the boxbuild version that ran it (`boxbuild`). */
  provenance?: Record<string, unknown>;
  /** Where it ran: "local" or the worker's name. */
  ranOn: string;
  /** Artifacts (files of the target) with their sha256, relative to the target. */
  artifacts: { path: string; size: number; sha256: string }[];
}

/** One run of a matrix: its results, written to <results>/results.json. */
export interface MatrixRun {
  matrix: string;
  startedAt: string;
  endedAt: string;
  builds: BuildResult[];
}

/** What a matrix runner tells as builds start and end (e.g. for the progress display). */
export interface MatrixEvents {
  /** `where`: the worker a queued build runs on (again after a retry). */
  started?: (build: MatrixBuild, where?: string) => void;
  ended?: (result: BuildResult) => void;
  /** Anything else worth a line: where a queued build runs, a worker lost, a queue no worker serves. */
  note?: (line: string) => void;
}

export interface MatrixOptions {
  /** The results directory: each build's own directory is builds/<id> in it. */
  resultsDir: string;
  /** Aborting stops the running builds; those not started yet end cancelled. */
  signal: AbortSignal;
  events?: MatrixEvents;
}

/**
 * Runs the builds of a matrix and resolves with their results, in the builds' order, once each has
 * ended (a failed build never stops the others): local slots (src/matrix/local.ts) or a queue.
 */
export type MatrixRunner<Options extends MatrixOptions = MatrixOptions> = (builds: MatrixBuild[], options: Options) => Promise<BuildResult[]>;
