/*
 * The fuzz harnesses without libFuzzer: call LLVMFuzzerTestOneInput on every file of the
 * directories (or the files) named on the command line, so that `make check` replays the
 * checked-in corpus with the normal compiler. With no argument, FUZZ_CORPUS (set at build time
 * to the harness' corpus directory in the source tree) is replayed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Largest input replayed; the harnesses are run with smaller -max_len. */
#define REPLAY_MAX_FILE (1024 * 1024)

static int replay_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t len;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    buf = malloc(REPLAY_MAX_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        fprintf(stderr, "replay: out of memory\n");
        return -1;
    }
    len = fread(buf, 1, REPLAY_MAX_FILE + 1, f);
    if (ferror(f) || len > REPLAY_MAX_FILE) {
        fprintf(stderr, "replay: %s: %s\n", path, ferror(f) ? "read error" : "too large");
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    /* Hand the harness an exact-size copy, as libFuzzer does, so over-reads stay visible. */
    {
        uint8_t *exact = fuzz_dup(buf, len);

        free(buf);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    (*count)++;
    return 0;
}

static int replay_path(const char *path, size_t *count)
{
    struct stat st;
    DIR *dir;
    struct dirent *e;
    int r = 0;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return replay_file(path, count);
    dir = opendir(path);
    if (dir == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while ((e = readdir(dir)) != NULL) {
        char *child;
        size_t n;

        if (e->d_name[0] == '.')
            continue;
        n = strlen(path) + 1 + strlen(e->d_name) + 1;
        child = malloc(n);
        if (child == NULL) {
            r = -1;
            break;
        }
        snprintf(child, n, "%s/%s", path, e->d_name);
        if (replay_path(child, count) < 0)
            r = -1;
        free(child);
    }
    closedir(dir);
    return r;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int r = 0;

    if (argc < 2) {
#ifdef FUZZ_CORPUS
        r = replay_path(FUZZ_CORPUS, &count);
#else
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
#endif
    }
    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i], &count) < 0)
            r = -1;
    }
    if (r < 0) {
        fprintf(stderr, "replay: could not read every input\n");
        return 1;
    }
    if (count == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 1;
    }
    printf("%zu inputs replayed without a failure\n", count);
    return 0;
}
