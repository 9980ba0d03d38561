/*
 * Runs a libFuzzer target's entry point over files and folders without libFuzzer, so any compiler (and any
 * sanitizer build) replays the committed corpus as an ordinary test: replay_<target> <file|dir>...
 * A broken promise aborts, as in the fuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf) return 1;
  /* An exact-size copy, so ASan catches a read one past the input. */
  uint8_t *exact = malloc(n ? n : 1);
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  int files = 0, bad = 0;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      bad |= run_file(argv[i]), ++files;
      continue;
    }
    struct dirent **names = NULL;
    int n = scandir(argv[i], &names, NULL, alphasort);
    for (int k = 0; k < n; ++k) {
      if (names[k]->d_name[0] != '.') {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) bad |= run_file(path), ++files;
      }
      free(names[k]);
    }
    free(names);
  }
  printf("replayed %d inputs%s\n", files, bad ? " (some could not be read)" : "");
  return bad || files == 0;
}
