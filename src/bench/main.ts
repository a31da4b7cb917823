import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { benchBoot } from './boot.js';
import { benchCBuild } from './cbuild.js';
import { benchContainer } from './container.js';
import { benchDownloads } from './download.js';
import { benchExtraction } from './extract.js';
import { benchImages } from './images.js';
import { benchImport } from './import.js';
import { benchKiwi } from './kiwi.js';
import { benchMatrix } from './matrix.js';
import { benchNetwork } from './network.js';
import { benchOci } from './oci.js';
import { benchRemote } from './remote.js';
import { benchSharing } from './sharing.js';
import { benchStartup, benchWarm } from './warm.js';

/**
 * `npm run bench [-- SECTION...]`: prints figures; it asserts nothing (performance goals are not
 * tests). Without sections, all of them.
 */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const env = { ...process.env, BOXBUILD_CACHE_DIR: process.env.BOXBUILD_CACHE_DIR ?? join(repo, '.cache/bench') };

const SECTIONS: Record<string, () => Promise<string>> = {
  startup: () => benchStartup(env),
  boot: () => benchBoot(env),
  warm: () => benchWarm(env),
  args: () => benchArgs(env),
  sharing: () => benchSharing(env),
  network: () => benchNetwork(env),
  cbuild: () => benchCBuild(env),
  kiwi: () => benchKiwi(env),
  images: () => benchImages(env),
  download: async () => `${await benchDownloads()}\n\n${await benchExtraction(env.BOXBUILD_CACHE_DIR)}`,
  oci: () => benchOci(env),
  matrix: () => benchMatrix(env),
  import: () => benchImport(env),
  container: () => benchContainer(env),
  remote: () => benchRemote(env),
};
const chosen = process.argv.slice(2);
const unknown = chosen.filter((name) => !(name in SECTIONS));
if (unknown.length) throw new Error(`unknown benchmark section(s) ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);

console.log(`boxbuild benchmark (${new Date().toISOString()}, cache ${env.BOXBUILD_CACHE_DIR}, load average ${loadavg()[0]!.toFixed(2)} at the start)`);
for (const name of chosen.length ? chosen : Object.keys(SECTIONS)) console.log(`\n${await SECTIONS[name]!()}`);
