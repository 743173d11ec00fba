/*
 * model_suite.h — the CMocka suite fixture of the tests that need SmolLM2 (header-only,
 * static): finds the model (SUBKV_MODEL, else data/ of the first of the build folder's
 * ancestors that has it), loads it once per suite, and NEED_MODEL skips a test with the
 * reason when the file is absent (`make model` could not download it). A file that is
 * there but does not load fails the suite.
 */
#ifndef SUBKV_MODEL_SUITE_H
#define SUBKV_MODEL_SUITE_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"
#include "svc_harness.h"

#define MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct suite {
    llama_model *real; /* NULL when the model file is missing */
    char why[512];
} suite;

static int suite_setup(void **state) {
    suite *s = calloc(1, sizeof *s);
    if (!s) return -1;
    /* SUBKV_MODEL, else data/ of the repository: the first of the build folder's ancestors
     * (build/, build/sanitize/, ...) that has data/MODEL_NAME. */
    char path[PATH_MAX + 64], dir[PATH_MAX];
    const char *env = getenv("SUBKV_MODEL");
    svc_build_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/../data/" MODEL_NAME, dir);
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash) break;
        *slash = '\0';
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s/data/" MODEL_NAME, dir);
        if (access(cand, R_OK) == 0) {
            snprintf(path, sizeof path, "%s", cand);
            break;
        }
    }
    if (env && *env) snprintf(path, sizeof path, "%s", env);
    skv_err err = {0};
    if (access(path, R_OK) != 0) {
        snprintf(s->why, sizeof s->why,
                 "%.400s absent (`make model` could not download it: see its message above)", path);
    } else if (llama_model_load(path, &s->real, &err) != SKV_OK) {
        fail_msg("the model at %s does not load: %s", path, err.msg);
    }
    *state = s;
    return 0;
}

static int suite_teardown(void **state) {
    suite *s = *state;
    llama_model_free(s->real);
    free(s);
    return 0;
}

#define NEED_MODEL(s)                                                                              \
    do {                                                                                           \
        if (!(s)->real) {                                                                          \
            printf("# skipped: %s\n", (s)->why);                                                   \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif /* SUBKV_MODEL_SUITE_H */
