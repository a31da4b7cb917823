/**
 * boxbuild's public API (`import { run, build } from 'boxbuild'`): run a command or a build in a
 * throwaway VM. Everything else in the package is internal.
 */
export { type BuildRequest, type RunHandle, type RunRequest, type RunResult, type ShareRequest, type VmRequest, build, run } from './api/run.js';
export { BoxbuildError, ExitCode, type ExitCodeName } from './errors.js';
export type { Arch } from './box/arch.js';
export type { NetworkWord } from './network/mode.js';
export { VERSION } from './version.js';
