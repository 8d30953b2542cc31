/*
 * Drives the sans-IO layer of libicr_app over libcurl: mints an installation token and prints
 * {"token", "expiresAt", "permissions"} on one line, exactly as core/examples/std_driver.rs
 * does, with the same flags, environment and exit status:
 *
 *   installation_token [--base-url URL] --app-id ID --private-key PATH|PEM --installation ID
 *
 * Each flag falls back to ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY and ICR_INSTALLATION_ID
 * (the key as a path to a PEM or DER file, or the PEM itself). Errors go to stderr as
 * "error: <message>", with exit status 1; --help prints the usage with exit status 0.
 *
 * Every decision (retries, back-off, Retry-After, the clock offset learned from Date, the
 * transport policy) is the library's; this loop only sends, sleeps and reports back. Build:
 *
 *   cc -std=c99 -I bindings/c/include bindings/c/examples/installation_token.c \
 *      -L target/debug -licr_app -lcurl
 */
#define _POSIX_C_SOURCE 200809L

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "icr_app.h"

static const char USAGE[] =
    "usage: installation_token [--base-url URL] --app-id ID --private-key PATH|PEM --installation ID\n"
    "Each flag falls back to ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY and ICR_INSTALLATION_ID.";

static const char *const FLAGS[4] = {"--base-url", "--app-id", "--private-key", "--installation"};
static const char *const VARS[4] = {"ICR_BASE_URL", "ICR_APP_ID", "ICR_PRIVATE_KEY", "ICR_INSTALLATION_ID"};
static const char *const SETTINGS[4] = {"base URL", "app id", "private key", "installation id"};

/* The error message of this run, printed by main. */
static char message[2048];

/* Keeps this thread's last error from libicr_app as the message; returns 1. */
static int library_error(void) {
    size_t needed = 0;
    icr_last_error(message, sizeof message, &needed);
    return 1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_until(int64_t until_ms) {
    int64_t left = until_ms - now_ms();
    if (left > 0) {
        struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

/* Overwrites a secret's copy (through a volatile pointer, so the writes are not left out). */
static void wipe(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}

/* The key: the PEM itself, or the bytes of the file it names (path trimmed). Never quoted. */
static int load_key(const char *value, unsigned char **out, size_t *out_len) {
    if (strstr(value, "-----BEGIN") != NULL) {
        size_t n = strlen(value);
        *out = malloc(n + 1);
        if (*out == NULL) return snprintf(message, sizeof message, "out of memory"), 1;
        memcpy(*out, value, n + 1);
        *out_len = n;
        return 0;
    }
    char path[4096];
    while (*value == ' ' || *value == '\t' || *value == '\n' || *value == '\r') value++;
    size_t n = strlen(value);
    while (n > 0 && strchr(" \t\r\n", value[n - 1]) != NULL) n--;
    if (n >= sizeof path) n = sizeof path - 1;
    memcpy(path, value, n);
    path[n] = '\0';
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(message, sizeof message, "invalid private key: the key file given cannot be read: %s (os error %d)",
                 strerror(e), e);
        return 1;
    }
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        unsigned char *bigger = malloc(cap * 2);
        if (bigger != NULL) memcpy(bigger, buf, len);
        wipe(buf, cap);
        free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        if (buf != NULL) wipe(buf, cap), free(buf);
        snprintf(message, sizeof message, "invalid private key: the key file given cannot be read");
        return 1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* The settings: each flag, else its environment variable; only the base URL may be missing. */
static int settings(int argc, char **argv, const char *values[4]) {
    for (int i = 1; i < argc; i += 2) {
        int which = -1;
        for (int j = 0; j < 4; j++)
            if (strcmp(argv[i], FLAGS[j]) == 0) which = j;
        if (which < 0) {
            snprintf(message, sizeof message, "invalid arguments: unknown flag `%.40s`\n%s", argv[i], USAGE);
            return 1;
        }
        if (i + 1 >= argc) {
            snprintf(message, sizeof message, "invalid arguments: %s needs a value", argv[i]);
            return 1;
        }
        values[which] = argv[i + 1];
    }
    for (int j = 0; j < 4; j++) {
        if (values[j] == NULL) {
            const char *env = getenv(VARS[j]);
            if (env != NULL && *env != '\0') values[j] = env;
        }
        if (values[j] == NULL && j > 0) {
            snprintf(message, sizeof message, "invalid %s: none given; pass %s or set %s", SETTINGS[j], FLAGS[j],
                     VARS[j]);
            return 1;
        }
    }
    return 0;
}

/* One response as it arrives: its headers (the last response's, after any 1xx or proxy CONNECT
 * answer) and its body, capped. */
struct exchange {
    char *head;
    size_t head_len;
    unsigned char *body;
    size_t body_len;
    size_t max_body;
    int too_large;
};

static size_t on_header(char *data, size_t size, size_t n, void *user) {
    struct exchange *x = user;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) x->head_len = 0; /* a new status line */
    char *grown = realloc(x->head, x->head_len + len + 1);
    if (grown == NULL) return 0;
    x->head = grown;
    memcpy(x->head + x->head_len, data, len);
    x->head_len += len;
    x->head[x->head_len] = '\0';
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *user) {
    struct exchange *x = user;
    size_t len = size * n;
    if (x->body_len + len > x->max_body) {
        x->too_large = 1;
        return 0;
    }
    unsigned char *grown = realloc(x->body, x->body_len + len + 1);
    if (grown == NULL) return 0;
    x->body = grown;
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    return len;
}

/* The icr_transport_kind of a libcurl failure. */
static uint32_t failure_kind(CURLcode code, const struct exchange *x) {
    if (x->too_large) return ICR_TRANSPORT_KIND_BODY_TOO_LARGE;
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT: return ICR_TRANSPORT_KIND_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION: return ICR_TRANSPORT_KIND_CONNECT;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE: return ICR_TRANSPORT_KIND_CONNECTION_LOST;
    default: return ICR_TRANSPORT_KIND_OTHER;
    }
}

/* Sends the request the Send step `id` lends and reports the outcome to the operation. */
static int send_step(CURL *curl, icr_op *op, icr_app *app, uint64_t id) {
    uint64_t timeout_ms, connect_ms, max_body;
    enum icr_route route;
    if (icr_transport_defaults(&timeout_ms, &connect_ms, &max_body) != ICR_STATUS_OK) return library_error();
    if (icr_op_request_route(op, 0, &route) != ICR_STATUS_OK) {
        /* The transport policy refused it: nothing is sent, the operation is told why. */
        char why[1024];
        size_t needed = 0;
        icr_last_error(why, sizeof why, &needed);
        size_t why_len = strlen(why);
        if (icr_op_handle_failure(op, app, id, ICR_TRANSPORT_KIND_REFUSED, why, why_len, now_ms()) != ICR_STATUS_OK)
            return library_error();
        return 0;
    }
    const char *method, *url;
    const uint8_t *body;
    size_t method_len, url_len, body_len, count;
    if (icr_op_request_method(op, &method, &method_len) != ICR_STATUS_OK ||
        icr_op_request_url(op, &url, &url_len) != ICR_STATUS_OK ||
        icr_op_request_body(op, &body, &body_len) != ICR_STATUS_OK ||
        icr_op_request_header_count(op, &count) != ICR_STATUS_OK)
        return library_error();
    struct curl_slist *list = curl_slist_append(NULL, "Expect:"); /* no 100-continue */
    for (size_t i = 0; i < count && list != NULL; i++) {
        const char *name, *value;
        size_t name_len, value_len;
        if (icr_op_request_header(op, i, &name, &name_len, &value, &value_len) != ICR_STATUS_OK) {
            curl_slist_free_all(list);
            return library_error();
        }
        char *line = malloc(name_len + value_len + 3);
        if (line == NULL) break;
        sprintf(line, "%s: %s", name, value); /* both NUL-terminated by the library */
        struct curl_slist *longer = curl_slist_append(list, line);
        wipe(line, name_len + value_len + 3); /* it may be the authorization header */
        free(line);
        if (longer == NULL) {
            curl_slist_free_all(list);
            list = NULL;
        } else {
            list = longer;
        }
    }
    if (list == NULL) return snprintf(message, sizeof message, "out of memory"), 1;

    struct exchange x = {NULL, 0, NULL, 0, (size_t)max_body, 0};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body_len > 0 ? (const char *)body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is a response */
    if (route == ICR_ROUTE_DIRECT) curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(list);

    icr_status status;
    if (code != CURLE_OK) {
        char why[CURL_ERROR_SIZE + 64];
        snprintf(why, sizeof why, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code));
        status = icr_op_handle_failure(op, app, id, failure_kind(code, &x), why, strlen(why), now_ms());
    } else {
        long http_status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
        /* Every header line of the final response but its status line: "name: value". */
        struct icr_header headers[128];
        size_t n = 0;
        char *save = NULL;
        char *line = x.head != NULL ? strtok_r(x.head, "\r\n", &save) : NULL;
        for (line = line != NULL ? strtok_r(NULL, "\r\n", &save) : NULL; line != NULL && n < 128;
             line = strtok_r(NULL, "\r\n", &save)) {
            char *colon = strchr(line, ':');
            if (colon == NULL) continue;
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t') value++;
            size_t value_len = strlen(value);
            while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t')) value_len--;
            struct icr_header h = {line, (size_t)(colon - line), value, value_len};
            headers[n++] = h;
        }
        status = icr_op_handle_response(op, app, id, (uint16_t)http_status, headers, n, x.body, x.body_len, now_ms());
    }
    if (x.body != NULL) wipe(x.body, x.body_len);
    free(x.head);
    free(x.body);
    return status == ICR_STATUS_OK ? 0 : library_error();
}

/* The one driving loop. Single-threaded: nothing moves the app's change counter while a wait
 * lasts, so a wait is a sleep. */
static int run(int argc, char **argv, char **out_json) {
    const char *values[4] = {NULL, NULL, NULL, NULL};
    if (settings(argc, argv, values) != 0) return 1;
    unsigned char *key = NULL;
    size_t key_len = 0;
    if (load_key(values[2], &key, &key_len) != 0) return 1;
    icr_app *app = NULL;
    const char *base_url = values[0] != NULL ? values[0] : "";
    icr_status made = icr_app_new(values[1], strlen(values[1]), key, key_len, base_url, strlen(base_url), &app);
    wipe(key, key_len);
    free(key);
    if (made != ICR_STATUS_OK) return library_error();
    icr_op *op = NULL;
    if (icr_op_installation_token(values[3], strlen(values[3]), 0, &op) != ICR_STATUS_OK) {
        icr_app_free(app);
        return library_error();
    }
    CURL *curl = curl_easy_init();
    int failed = curl == NULL ? (snprintf(message, sizeof message, "curl_easy_init failed"), 1) : 0;
    while (!failed) {
        enum icr_step step;
        uint64_t id, change;
        int64_t until;
        if (icr_op_poll(op, app, now_ms(), &step, &id, &until, &change) != ICR_STATUS_OK) {
            failed = library_error();
            break;
        }
        if (step == ICR_STEP_SEND) {
            failed = send_step(curl, op, app, id);
        } else if (step == ICR_STEP_SLEEP || step == ICR_STEP_WAIT) {
            sleep_until(until);
        } else if (step == ICR_STEP_DONE) {
            const char *json;
            size_t json_len;
            if (icr_op_result(op) != ICR_STATUS_OK || icr_op_token_json(op, &json, &json_len) != ICR_STATUS_OK) {
                failed = library_error();
            } else if ((*out_json = malloc(json_len + 1)) != NULL) {
                memcpy(*out_json, json, json_len + 1);
            }
            break;
        } else {
            /* ICR_STEP_SIGN and ICR_STEP_STORE: only for an app without its key, or with a
             * store; this one has neither. */
            snprintf(message, sizeof message, "unexpected step %d", (int)step);
            failed = 1;
        }
    }
    if (failed) icr_op_abandon(op, app, now_ms());
    curl_easy_cleanup(curl);
    icr_op_free(op);
    icr_app_free(app);
    return failed;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s\n", USAGE);
            return 0;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "error: curl_global_init failed\n");
        return 1;
    }
    char *json = NULL;
    int failed = run(argc, argv, &json);
    curl_global_cleanup();
    if (failed || json == NULL) {
        fprintf(stderr, "error: %s\n", message[0] != '\0' ? message : "out of memory");
        return 1;
    }
    printf("%s\n", json);
    wipe(json, strlen(json));
    free(json);
    return 0;
}
