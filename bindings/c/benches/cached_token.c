/*
 * The blocking client's cached token call, timed from C: icr_client_token with a scope made once
 * (icr_token_scope_new), then icr_client_installation_token with the id as text, each served from
 * the cache ITERATIONS times in a row after a warm-up; one line on stdout: the two means in
 * nanoseconds a call. Run by benches/cached_token.rs, which compares it with the Rust client's
 * own cached call in the same run; settings in ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY (the
 * PEM) and ICR_INSTALLATION_ID.
 *
 * usage: cached_token ITERATIONS
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "icr_app.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *base = getenv("ICR_BASE_URL"), *app_id = getenv("ICR_APP_ID"), *pem = getenv("ICR_PRIVATE_KEY"),
               *id = getenv("ICR_INSTALLATION_ID");
    long iterations = argc > 1 ? atol(argv[1]) : 0;
    size_t id_len, len;
    char token[256];
    int64_t expires;
    icr_app *app = NULL;
    icr_client *client = NULL;
    icr_token_scope *scope = NULL;
    if (!base || !app_id || !pem || !id || iterations <= 0) {
        fprintf(stderr, "usage: cached_token ITERATIONS (settings in ICR_* variables)\n");
        return 2;
    }
    id_len = strlen(id);
    if (icr_app_new(app_id, strlen(app_id), (const uint8_t *)pem, strlen(pem), base, strlen(base), &app) ||
        icr_client_new(app, NULL, &client))
        return fprintf(stderr, "cannot make the client\n"), 1;
    icr_app_free(app);
    /* The mint, then a warm-up from the cache. */
    for (long i = 0; i < iterations / 10 + 1; i++) {
        if (icr_client_installation_token(client, id, id_len, 0, token, sizeof token, &len, &expires))
            return fprintf(stderr, "the token call failed\n"), 1;
    }
    if (icr_token_scope_new(ICR_SCOPE_INSTALLATION, id, id_len, &scope))
        return fprintf(stderr, "cannot make the scope\n"), 1;
    for (long i = 0; i < iterations / 10 + 1; i++)
        icr_client_token(client, scope, 0, token, sizeof token, &len, &expires);
    double start = now_ns();
    for (long i = 0; i < iterations; i++) {
        icr_client_token(client, scope, 0, token, sizeof token, &len, &expires);
    }
    double with_scope = now_ns() - start;
    start = now_ns();
    for (long i = 0; i < iterations; i++) {
        icr_client_installation_token(client, id, id_len, 0, token, sizeof token, &len, &expires);
    }
    double with_text = now_ns() - start;
    printf("%.2f %.2f\n", with_scope / (double)iterations, with_text / (double)iterations);
    icr_token_scope_free(scope);
    icr_client_free(client);
    return 0;
}
