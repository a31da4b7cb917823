import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { benchBoot } from './boot.js';
import { benchCBuild } from './cbuild.js';
import { benchDownloads } from './download.js';
import { benchKiwi } from './kiwi.js';
import { benchSharing } from './sharing.js';
import { benchWarm } from './warm.js';

/** `npm run bench`: prints figures; it asserts nothing (performance goals are not tests). */
const repo = fileURLToPath(new URL('../../', import.meta.url));
const env = { ...process.env, BOXBUILD_CACHE_DIR: process.env.BOXBUILD_CACHE_DIR ?? join(repo, '.cache/bench') };

console.log(`boxbuild benchmark (${new Date().toISOString()}, cache ${env.BOXBUILD_CACHE_DIR})\n`);
console.log(await benchBoot(env));
console.log(`\n${await benchWarm(env)}`);
console.log(`\n${await benchArgs(env)}`);
console.log(`\n${await benchSharing(env)}`);
console.log(`\n${await benchCBuild(env)}`);
console.log(`\n${await benchKiwi(env)}`);
console.log(`\n${await benchDownloads()}`);
