import type { DiskScriptRunner } from '../box/resolve.js';

/** How boxes are made: a script in a VM of the `debian` box (src/box gets it as BoxRequest.runScript); the runner loads only when a box is made. */
export const runDiskScript: DiskScriptRunner = async (request) => (await import('./agent.js')).runDiskScript(request);
