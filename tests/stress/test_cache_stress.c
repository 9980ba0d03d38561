/*
 * The kernel cache under contention: rounds of 16 processes (fork + exec of this binary, so each has its own
 * fresh library state) that run dsv4_precompile of the v4-pro router for sm_90a into one empty folder at
 * once, while a reader process loops over the folder verifying every *.cubin it can see.
 *  - Clean rounds: every writer succeeds; afterwards the folder holds exactly the router's kernels, each
 *    verifying (dsv4_cache_read with the key from its name, which must be the key dsv4_jit_key gives), and
 *    no temp file.
 *  - Kill rounds: some writers get SIGKILL at random moments while they compile, others the moment their
 *    temp file appears (inotify), i.e. while they publish. The others never fail, the folder again holds exactly the router's kernels, each verifying; a killed writer may
 *    leave its `.tmp-<pid>-*` file behind (counted and reported), a survivor never does.
 *  - The reader never sees a partial or corrupt *.cubin, in any round.
 * Settings: DSV4_STRESS_SEED (random kill schedule; printed), DSV4_STRESS_ROUNDS (default 4: clean, kill,
 * kill, clean). The folders live under $DSV4_CACHE_DIR/stress (CTest sets it), else /tmp.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jit.h"
#include "ops/ops.h"

#define WRITERS 16
#define ARCH "sm_90a"
#define ROUND_DEADLINE_S 240.0

static int g_failures;

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__);    \
      fprintf(stderr, __VA_ARGS__);                             \
      fputc('\n', stderr);                                      \
      ++g_failures;                                             \
    }                                                           \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

static dsv4_router_config v4_pro(void) {
  dsv4_router_config cfg;
  if (dsv4_router_config_preset("v4-pro", DSV4_ROUTER_DENSE, &cfg) != DSV4_OK) abort();
  return cfg;
}

/* ---------------- child roles ---------------- */

/* A writer: precompile the router into DSV4_CACHE_DIR (set by the parent before exec). */
static int writer_main(void) {
  alarm(180); /* a hung writer dies of SIGALRM, which the parent reports as a failure */
  dsv4_router_config cfg = v4_pro();
  dsv4_jit_stats st;
  dsv4_status s = dsv4_precompile(&cfg, ARCH, &st);
  if (s != DSV4_OK) {
    fprintf(stderr, "writer %ld: dsv4_precompile: %s: %s\n", (long)getpid(), dsv4_status_string(s),
            dsv4_last_error());
    return 1;
  }
  return 0;
}

/* The key a cache file's name promises: the 32 hex digits before ".cubin". */
static bool key_from_name(const char *name, dsv4_key *key) {
  size_t len = strlen(name);
  if (len < 6 + 32 + 1 || strcmp(name + len - 6, ".cubin") != 0 || name[len - 39] != '-') return false;
  for (int i = 0; i < 16; ++i) {
    unsigned v;
    char hex[3] = {name[len - 38 + 2 * i], name[len - 37 + 2 * i], 0};
    if (sscanf(hex, "%2x", &v) != 1) return false;
    key->bytes[i] = (uint8_t)v;
  }
  return true;
}

/* The reader: until <dir>/../stop-<round> exists, verify every *.cubin in <dir>; exit 1 on the first bad one. */
static int reader_main(const char *dir, const char *stop) {
  alarm(300);
  long verified = 0, passes = 0;
  for (;;) {
    bool stopping = access(stop, F_OK) == 0; /* one last full pass after the stop file appears */
    DIR *d = opendir(dir);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 6, ".cubin") != 0) continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        dsv4_key key;
        if (!key_from_name(e->d_name, &key)) {
          fprintf(stderr, "reader: %s is not named <tag>-<key>.cubin\n", path);
          return 1;
        }
        dsv4_cubin c;
        dsv4_status s = dsv4_cache_read(path, &key, &c);
        if (s != DSV4_OK) {
          fprintf(stderr, "reader: a visible cache file does not verify: %s: %s\n", dsv4_status_string(s),
                  dsv4_last_error());
          return 1;
        }
        dsv4_cubin_free(&c);
        ++verified;
      }
      closedir(d);
    }
    ++passes;
    if (stopping) break;
    usleep(300); /* leave the writers most of the CPU */
  }
  printf("reader: %ld files verified in %ld passes\n", verified, passes);
  fflush(stdout);
  return verified > 0 ? 0 : 3; /* 3: saw nothing (not a corruption; the parent tallies it) */
}

/* ---------------- the parent ---------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static pid_t spawn(const char *self, const char *role, const char *a1, const char *a2, const char *cache_dir) {
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(2);
  }
  if (pid == 0) {
    if (cache_dir) setenv("DSV4_CACHE_DIR", cache_dir, 1); /* this process has no threads: safe after fork */
    unsetenv("DSV4_CACHE");
    execl(self, self, role, a1 ? a1 : "", a2 ? a2 : "", (char *)NULL);
    _exit(127);
  }
  return pid;
}

typedef struct expected_file {
  char name[256];
} expected_file;

/* Checks the folder after a round. killed[]: pids that got SIGKILL (their temp files are allowed). */
static void check_folder(const char *arch_dir, const expected_file *want, int n_want, const pid_t *killed,
                         int n_killed, int round, int *tmp_left) {
  int found[DSV4_MAX_ROUTER_KERNELS] = {0};
  *tmp_left = 0;
  DIR *d = opendir(arch_dir);
  CHECK(d != NULL, "round %d: no folder %s", round, arch_dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", arch_dir, e->d_name);
    if (!strncmp(e->d_name, ".tmp-", 5)) {
      long pid = strtol(e->d_name + 5, NULL, 10);
      bool by_victim = false;
      for (int k = 0; k < n_killed; ++k) by_victim |= killed[k] == (pid_t)pid;
      CHECK(by_victim, "round %d: temp file %s was left by process %ld, which was not killed", round, e->d_name, pid);
      ++*tmp_left;
      continue;
    }
    int which = -1;
    for (int i = 0; i < n_want; ++i)
      if (!strcmp(e->d_name, want[i].name)) which = i;
    CHECK(which >= 0, "round %d: unexpected file %s", round, e->d_name);
    if (which < 0) continue;
    dsv4_key key;
    CHECK(key_from_name(e->d_name, &key), "round %d: bad name %s", round, e->d_name);
    dsv4_cubin c;
    dsv4_status s = dsv4_cache_read(path, &key, &c);
    CHECK(s == DSV4_OK, "round %d: %s does not verify: %s", round, e->d_name, dsv4_last_error());
    if (s == DSV4_OK) CHECK(c.size > 0 && c.lowered_name[0] != '\0', "round %d: %s is empty", round, e->d_name);
    dsv4_cubin_free(&c);
    found[which]++;
  }
  closedir(d);
  for (int i = 0; i < n_want; ++i) CHECK(found[i] == 1, "round %d: kernel file %s is missing", round, want[i].name);
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "writer")) return writer_main();
  if (argc >= 4 && !strcmp(argv[1], "reader")) return reader_main(argv[2], argv[3]);

  char self[4096];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) {
    perror("readlink /proc/self/exe");
    return 2;
  }
  self[sl] = '\0';
  const char *env_root = getenv("DSV4_CACHE_DIR");
  char root[4096];
  snprintf(root, sizeof root, "%s/stress", env_root && *env_root ? env_root : "/tmp/dsv4-stress");
  nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (dsv4_mkdir_p(root) != DSV4_OK) {
    fprintf(stderr, "%s\n", dsv4_last_error());
    return 2;
  }
  const char *seed_env = getenv("DSV4_STRESS_SEED");
  uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  if (!seed) seed = 1;
  const char *rounds_env = getenv("DSV4_STRESS_ROUNDS");
  int rounds = rounds_env ? atoi(rounds_env) : 4;
  if (rounds < 1) rounds = 1;
  printf("cache stress: %d writers per round, %d rounds, seed %llu (DSV4_STRESS_SEED to repeat), folders under %s\n",
         WRITERS, rounds, (unsigned long long)seed, root);
  fflush(stdout);
  uint64_t rs = seed;

  /* The files a v4-pro router's kernels must end up in. */
  dsv4_router_config cfg = v4_pro();
  dsv4_kernel_spec specs[DSV4_MAX_ROUTER_KERNELS];
  int n_specs = dsv4_router_kernel_specs(&cfg, specs);
  expected_file want[DSV4_MAX_ROUTER_KERNELS];
  for (int i = 0; i < n_specs; ++i) {
    dsv4_key key;
    if (dsv4_jit_key(&specs[i], ARCH, &key) != DSV4_OK) {
      fprintf(stderr, "dsv4_jit_key: %s\n", dsv4_last_error());
      return 2;
    }
    char hex[33];
    dsv4_key_hex(&key, hex);
    snprintf(want[i].name, sizeof want[i].name, "%s-%s.cubin", specs[i].tag, hex);
  }

  double clean_duration = 0;
  long total_killed = 0, total_tmp = 0, reader_blind = 0;
  for (int r = 0; r < rounds; ++r) {
    bool kill_round = r % 3 != 0; /* rounds 0, 3, 6, ... are clean */
    if (clean_duration == 0) kill_round = false;
    char dir[4400], arch_dir[4500], stop[4500];
    snprintf(dir, sizeof dir, "%s/round-%d", root, r);
    snprintf(arch_dir, sizeof arch_dir, "%s/%s", dir, ARCH);
    snprintf(stop, sizeof stop, "%s/stop-%d", root, r);
    if (dsv4_mkdir_p(arch_dir) != DSV4_OK) return 2;

    pid_t reader = spawn(self, "reader", arch_dir, stop, NULL);
    pid_t pids[WRITERS];
    double kill_at[WRITERS];
    bool victim[WRITERS] = {false}, done[WRITERS] = {false}, on_publish[WRITERS] = {false};
    int status[WRITERS] = {0};
    int n_victims = 0;
    if (kill_round) {
      /* 4 to 7 victims: about half killed when their first temp file appears (publishing), the others at a
       * random moment within the time a clean round took (mostly compiling). */
      n_victims = 4 + (int)(rnd(&rs) % 4);
      for (int v = 0; v < n_victims;) {
        int w = (int)(rnd(&rs) % WRITERS);
        if (victim[w]) continue;
        victim[w] = true, ++v;
        on_publish[w] = rnd(&rs) % 2 == 0;
        kill_at[w] = on_publish[w] ? 1e30 : clean_duration * (0.02 + 0.96 * (double)(rnd(&rs) % 10000) / 10000.0);
      }
    }
    int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0 || inotify_add_watch(ino, arch_dir, IN_CREATE) < 0) {
      perror("inotify");
      return 2;
    }
    double t0 = now_s();
    for (int w = 0; w < WRITERS; ++w) pids[w] = spawn(self, "writer", NULL, NULL, dir);
    pid_t killed[WRITERS];
    int n_killed = 0, left = WRITERS;
    while (left > 0) {
      /* Temp files created since the last look: kill their writer at once if it is a publish victim. */
      char evbuf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
      ssize_t got;
      while ((got = read(ino, evbuf, sizeof evbuf)) > 0)
        for (char *p = evbuf; p < evbuf + got;) {
          const struct inotify_event *ev = (const struct inotify_event *)p;
          if (ev->len && !strncmp(ev->name, ".tmp-", 5)) {
            pid_t owner = (pid_t)strtol(ev->name + 5, NULL, 10);
            for (int w = 0; w < WRITERS; ++w)
              if (pids[w] == owner && victim[w] && on_publish[w] && !done[w]) kill_at[w] = 0;
          }
          p += sizeof *ev + ev->len;
        }
      double t = now_s() - t0;
      for (int w = 0; w < WRITERS; ++w)
        if (victim[w] && !done[w] && t >= kill_at[w]) {
          if (kill(pids[w], SIGKILL) == 0) killed[n_killed++] = pids[w];
          victim[w] = false; /* once */
        }
      for (int w = 0; w < WRITERS; ++w) {
        if (done[w]) continue;
        int st = 0;
        pid_t p = waitpid(pids[w], &st, WNOHANG);
        if (p == pids[w]) done[w] = true, status[w] = st, --left;
      }
      if (t > ROUND_DEADLINE_S) {
        CHECK(false, "round %d: writers still running after %.0f s; killing them", r, ROUND_DEADLINE_S);
        for (int w = 0; w < WRITERS; ++w)
          if (!done[w]) kill(pids[w], SIGKILL), waitpid(pids[w], &status[w], 0), done[w] = true;
        left = 0;
      }
      struct pollfd pfd = {ino, POLLIN, 0};
      if (left > 0) poll(&pfd, 1, 2);
    }
    close(ino);
    double dt = now_s() - t0;
    int fd = open(stop, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    int rst = 0;
    waitpid(reader, &rst, 0);
    CHECK(WIFEXITED(rst) && (WEXITSTATUS(rst) == 0 || WEXITSTATUS(rst) == 3),
          "round %d: the reader saw a partial or corrupt cache file (status 0x%x)", r, rst);
    if (WIFEXITED(rst) && WEXITSTATUS(rst) == 3) ++reader_blind;

    int sigkilled = 0, ok = 0, killed_publishing = 0;
    for (int w = 0; w < WRITERS; ++w) {
      bool was_killed = false;
      for (int k = 0; k < n_killed; ++k) was_killed |= killed[k] == pids[w];
      if (was_killed && WIFSIGNALED(status[w]) && WTERMSIG(status[w]) == SIGKILL) {
        ++sigkilled;
        killed_publishing += on_publish[w];
        continue;
      }
      /* A survivor (or a victim the kill missed because it had already finished) must have succeeded. */
      CHECK(WIFEXITED(status[w]) && WEXITSTATUS(status[w]) == 0, "round %d: writer %ld failed (status 0x%x)", r,
            (long)pids[w], status[w]);
      ++ok;
    }
    int tmp_left = 0;
    check_folder(arch_dir, want, n_specs, killed, n_killed, r, &tmp_left);
    if (!kill_round) CHECK(tmp_left == 0, "round %d: a clean round left %d temp files", r, tmp_left);
    printf("round %d (%s): %.2f s, %d writers succeeded, %d killed (%d of them once a temp file of theirs "
           "appeared), %d kernel files verified, %d temp files left by killed writers\n",
           r, kill_round ? "kills" : "clean", dt, ok, sigkilled, killed_publishing, n_specs, tmp_left);
    fflush(stdout);
    total_killed += sigkilled, total_tmp += tmp_left;
    if (!kill_round && clean_duration == 0) clean_duration = dt;
  }
  CHECK(reader_blind < rounds, "the reader never saw a published file in any round");
  printf("cache stress: %s; %ld writers killed in all, %ld temp files left by them, %d failures\n",
         g_failures ? "FAILED" : "passed", total_killed, total_tmp, g_failures);
  return g_failures ? 1 : 0;
}
