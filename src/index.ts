/**
 * boxbuild's public API: run a build, a command, a KIWI build or a booted image in a throwaway VM,
 * and manage the box cache. Everything else in the package is internal.
 */
export { BoxbuildError } from './errors.js';
export { VERSION } from './version.js';
export type { Arch } from './box/arch.js';
export { cacheRoot } from './box/cache.js';
export { type BoxEntry, loadRegistry, findBox } from './box/registry.js';
export { type BoxRequest, ensureBox } from './box/resolve.js';
export { type GuestCommand, type RunOptions } from './runner/session.js';
export { buildCommand, execCommand } from './runner/commands.js';
export { runInBox } from './runner/run.js';
export { type KiwiRequest, runKiwiBox } from './runner/kiwi.js';
export { runInImage } from './runner/image.js';
