/*
 * The C tests' own checks, shared by the tests in this folder: CHECK(cond) and CHECK_STATUS(call, expected)
 * count and report failures (with the library's last error message), and each test's main
 * prints `checks` and `failures` at the end. S("literal") and T(text) pass text as the pointer
 * and length pairs the library takes.
 */
#ifndef ICR_APP_TESTS_CHECK_H
#define ICR_APP_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

#include "icr_app.h"

static int failures = 0;
static int checks = 0;

/* This thread's last error message, into a static buffer. */
static inline const char *last_error(void) {
    static char buf[2048];
    size_t needed = 0;
    if (icr_last_error(buf, sizeof buf, &needed) != ICR_STATUS_OK) return "(no message)";
    return buf;
}

#define CHECK(cond)                                                                    \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

/* A status check that also prints the library's message on failure. */
#define CHECK_STATUS(call, expected)                                                   \
    do {                                                                               \
        enum icr_status got_ = (call);                                                 \
        checks++;                                                                      \
        if (got_ != (expected)) {                                                      \
            failures++;                                                                \
            fprintf(stderr, "%s:%d: %s returned %s, not %s (%s)\n", __FILE__, __LINE__, \
                    #call, icr_status_name((uint32_t)got_),                            \
                    icr_status_name((uint32_t)(expected)), last_error());              \
        }                                                                              \
    } while (0)

#define S(literal) literal, (sizeof literal - 1)
#define T(text) (text), strlen(text)

#endif
