/*
 * The modes of what boxbuild makes in its cache: the user's alone, as the cache itself is (see
 * openCache; a build's log holds its --env values). Files that tools make there (apt-get,
 * debootstrap, cp) keep their own modes, closed off by the cache's.
 */
export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;
