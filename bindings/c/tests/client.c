/*
 * The blocking client of libicr_app (icr_client_*, icr_client_options_*, icr_response_*) from
 * C99 against the fake registry run as a process (`icr-app mock`), over real loopback HTTP.
 * Run by bindings/c/run-tests.sh under ASan/UBSan and under Valgrind, with the settings the
 * mock prints: ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY (a path), ICR_INSTALLATION_ID and
 * ICR_ORGANIZATION_ID. The signer tests sign with the `openssl` command.
 *
 * usage: client   (the settings in the environment)
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "icr_app.h"
#include "check.h"

static const char *base_url, *app_id, *key_path, *installation, *organization;
static uint8_t *key;
static size_t key_len;

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long size;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    if (buf != NULL) *len = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

static icr_app *keyed_app(void) {
    icr_app *app = NULL;
    CHECK_STATUS(icr_app_new(T(app_id), key, key_len, T(base_url), &app), ICR_STATUS_OK);
    return app;
}

static icr_app *keyless_app(void) {
    icr_app *app = NULL;
    CHECK_STATUS(icr_app_new_without_key(T(app_id), T(base_url), &app), ICR_STATUS_OK);
    return app;
}

/* What the log sink received. */
struct log {
    pthread_mutex_t lock;
    int records, requests, secrets;
    char token[256];
};

static void on_log(void *user_data, uint32_t level, const char *message, size_t message_len) {
    struct log *log = user_data;
    pthread_mutex_lock(&log->lock);
    log->records++;
    if (level == ICR_LOG_LEVEL_DEBUG && strncmp(message, "request method=", 15) == 0) log->requests++;
    if (strlen(message) != message_len || strstr(message, "crs_") != NULL || strstr(message, "eyJ") != NULL ||
        strstr(message, "Bearer") != NULL || (log->token[0] != '\0' && strstr(message, log->token) != NULL))
        log->secrets++;
    pthread_mutex_unlock(&log->lock);
}

/* A token call's results. */
struct token {
    char text[256];
    size_t len;
    int64_t expires_at_ms;
};

static void test_options(void) {
    icr_client_options *options = NULL;
    CHECK_STATUS(icr_client_options_new(NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_new(&options), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_base_url(NULL, S("http://x")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_base_url(options, NULL, 3), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_base_url(options, S("\xff")), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_user_agent(NULL, S("x")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_timeout_ms(options, 0), ICR_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "timeout_ms is 0") != NULL);
    CHECK_STATUS(icr_client_options_set_timeout_ms(NULL, 1000), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_retries(options, 101), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_retries(NULL, 1), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_allow_insecure_http(NULL, 1), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_redis_url(options, S("")), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_redis_url(NULL, S("redis://x")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_proxy(options, S("")), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_proxy(NULL, S("http://proxy:3128")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_ca_file(options, S("")), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_ca_file(NULL, S("/ca.pem")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_sealing_secret(options, NULL, 32), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_signer(options, NULL, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_log_sink(NULL, on_log, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_options_set_log_sink(options, NULL, NULL), ICR_STATUS_OK); /* none */
    icr_client_options_free(options);
    icr_client_options_free(NULL);
    icr_client_free(NULL);
    icr_response_free(NULL);
}

/* Each setting icr_client_new checks, and the signer rule. */
static void test_new_errors(void) {
    icr_app *app = keyed_app(), *keyless = keyless_app();
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    CHECK_STATUS(icr_client_new(NULL, NULL, &client), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_new(app, NULL, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_new(keyless, NULL, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "icr_client_options_set_signer") != NULL);
    CHECK(client == NULL);

    icr_client_options_new(&options);
    icr_client_options_set_base_url(options, S("ftp://registry.example"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "base URL") != NULL);
    icr_client_options_set_base_url(options, S(""));
    icr_client_options_set_user_agent(options, S("bad\nagent"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    icr_client_options_set_user_agent(options, S(""));
    icr_client_options_set_redis_url(options, S("http://user:hunter2@127.0.0.1:1/"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "hunter2") == NULL);
    CHECK(client == NULL);
    icr_client_options_free(options);
    icr_app_free(app);
    icr_app_free(keyless);
}

/* A proxy and a CA file: a CA file that cannot be read is named; a plain http registry behind
 * a proxy is refused (credentials would cross it in clear), the proxy's password never shown;
 * a loopback registry is reached directly, whatever proxy is set. */
static void test_proxy_and_ca_file(void) {
    icr_app *app = keyed_app();
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;

    icr_client_options_new(&options);
    icr_client_options_set_ca_file(options, S("/nonexistent/corporate-ca.pem"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "/nonexistent/corporate-ca.pem") != NULL);
    CHECK(client == NULL);
    icr_client_options_free(options);

    icr_client_options_new(&options);
    icr_client_options_set_proxy(options, S("http://user:hunter2@127.0.0.1:9"));
    icr_client_options_set_base_url(options, S("http://registry.example"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "hunter2") == NULL);
    CHECK(strstr(last_error(), "127.0.0.1:9") != NULL);
    CHECK(client == NULL);

    icr_client_options_set_base_url(options, S(""));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strncmp(t.text, "crs_", 4) == 0);
    icr_client_free(client);
    icr_client_options_free(options);
    icr_app_free(app);
}

static void test_tokens_and_requests(void) {
    icr_app *app = keyed_app();
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct log log;
    struct token a, b, org, app_token;
    size_t len = 0, count = 0;
    int64_t expires = 0;
    char small[8];
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.lock, NULL);

    icr_client_options_new(&options);
    CHECK_STATUS(icr_client_options_set_base_url(options, T(base_url)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_user_agent(options, S("icr-app-c-tests/1")), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_timeout_ms(options, 10000), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_retries(options, 2), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_allow_insecure_http(options, 0), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_log_sink(options, on_log, &log), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    icr_client_options_free(options); /* the client keeps a copy */
    icr_app_free(app);                /* and its own app */

    /* Minted, then from the cache: the same token. */
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, a.text, sizeof a.text, &a.len,
                                               &a.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(a.len == strlen(a.text) && a.len > 10);
    CHECK(a.expires_at_ms > wall_ms() + 60000);
    memcpy(log.token, a.text, a.len + 1);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 1000, b.text, sizeof b.text, &b.len,
                                               &b.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strcmp(a.text, b.text) == 0 && a.expires_at_ms == b.expires_at_ms);

    /* The buffer: the length asked for, nothing copied, and the token never in the message. */
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, NULL, 0, &len, &expires),
                 ICR_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == a.len);
    CHECK(strstr(last_error(), a.text) == NULL);
    memset(small, 'x', sizeof small);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, small, sizeof small, &len, &expires),
                 ICR_STATUS_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x');
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, NULL, 5, &len, &expires),
                 ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, small, sizeof small, NULL, &expires),
                 ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, small, sizeof small, &len, NULL),
                 ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_installation_token(NULL, T(installation), 0, small, sizeof small, &len, &expires),
                 ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_installation_token(client, NULL, 4, 0, small, sizeof small, &len, &expires),
                 ICR_STATUS_NULL_ARGUMENT);

    /* The registry's errors and bad ids. */
    CHECK_STATUS(icr_client_installation_token(client, S("00000000-0000-4000-8000-000000000000"), 0, a.text,
                                               sizeof a.text, &len, &expires),
                 ICR_STATUS_NOT_FOUND);
    CHECK(strstr(last_error(), "404") != NULL);
    CHECK_STATUS(icr_client_installation_token(client, S("bad id"), 0, a.text, sizeof a.text, &len, &expires),
                 ICR_STATUS_CONFIG);
    CHECK_STATUS(icr_client_organization_token(client, S("bad id"), 0, a.text, sizeof a.text, &len, &expires),
                 ICR_STATUS_CONFIG);

    /* The organization's installation is the first one: its token. */
    CHECK_STATUS(icr_client_organization_token(client, T(organization), 0, org.text, sizeof org.text, &org.len,
                                               &org.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strcmp(org.text, b.text) == 0);
    CHECK_STATUS(icr_client_app_token(client, 0, app_token.text, sizeof app_token.text, &app_token.len,
                                      &app_token.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(app_token.len > 10 && strcmp(app_token.text, org.text) != 0);
    CHECK_STATUS(icr_client_app_token(NULL, 0, a.text, sizeof a.text, &len, &expires), ICR_STATUS_NULL_ARGUMENT);

    /* A scope made once: the same tokens, and its errors. */
    {
        icr_token_scope *inst = NULL, *of_org = NULL, *of_app = NULL, *untouched = (icr_token_scope *)&count;
        struct token c;
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_INSTALLATION, T(installation), &inst), ICR_STATUS_OK);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_ORGANIZATION, T(organization), &of_org), ICR_STATUS_OK);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_APP, NULL, 0, &of_app), ICR_STATUS_OK);
        CHECK_STATUS(icr_client_token(client, inst, 0, c.text, sizeof c.text, &c.len, &c.expires_at_ms), ICR_STATUS_OK);
        CHECK(strcmp(c.text, b.text) == 0 && c.expires_at_ms == b.expires_at_ms);
        CHECK_STATUS(icr_client_token(client, of_org, 0, c.text, sizeof c.text, &c.len, &c.expires_at_ms), ICR_STATUS_OK);
        CHECK(strcmp(c.text, b.text) == 0);
        CHECK_STATUS(icr_client_token(client, of_app, 0, c.text, sizeof c.text, &c.len, &c.expires_at_ms), ICR_STATUS_OK);
        CHECK(strcmp(c.text, app_token.text) == 0);
        CHECK_STATUS(icr_client_token(client, inst, 0, NULL, 0, &len, &expires), ICR_STATUS_BUFFER_TOO_SMALL);
        CHECK(len == b.len);
        CHECK_STATUS(icr_client_token(client, NULL, 0, c.text, sizeof c.text, &len, &expires), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_client_token(NULL, inst, 0, c.text, sizeof c.text, &len, &expires), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_client_token(client, inst, 0, c.text, sizeof c.text, NULL, &expires), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_INSTALLATION, S("bad id"), &untouched), ICR_STATUS_CONFIG);
        CHECK(strstr(last_error(), "whitespace") != NULL);
        CHECK(untouched == (icr_token_scope *)&count);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_ORGANIZATION, S(""), &untouched), ICR_STATUS_CONFIG);
        CHECK(strstr(last_error(), "empty") != NULL);
        CHECK_STATUS(icr_token_scope_new(7, T(installation), &untouched), ICR_STATUS_INVALID_ARGUMENT);
        CHECK(strstr(last_error(), "icr_scope") != NULL);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_INSTALLATION, S("\xff\xfe"), &untouched), ICR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_INSTALLATION, NULL, 4, &untouched), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_token_scope_new(ICR_SCOPE_INSTALLATION, T(installation), NULL), ICR_STATUS_NULL_ARGUMENT);
        CHECK(untouched == (icr_token_scope *)&count);
        icr_token_scope_free(inst);
        icr_token_scope_free(of_org);
        icr_token_scope_free(of_app);
        icr_token_scope_free(NULL);
    }

    /* Any request, as the organization, as an installation, with headers and a body. */
    {
        char path[256];
        icr_response *response = NULL;
        uint16_t status = 0;
        size_t n = 0, name_len, value_len, body_len;
        const char *name, *value;
        const uint8_t *body;
        struct icr_header accept = {S("accept"), S("application/json")};
        snprintf(path, sizeof path, "/organizations/%s", organization);
        CHECK_STATUS(icr_client_request(client, ICR_SCOPE_ORGANIZATION, T(organization), S("GET"), T(path), &accept, 1,
                                        NULL, 0, &response),
                     ICR_STATUS_OK);
        CHECK_STATUS(icr_response_status(response, &status), ICR_STATUS_OK);
        CHECK(status == 200);
        CHECK_STATUS(icr_response_header_count(response, &n), ICR_STATUS_OK);
        CHECK(n > 0);
        CHECK_STATUS(icr_response_header(response, 0, &name, &name_len, &value, &value_len), ICR_STATUS_OK);
        CHECK(name_len == strlen(name) && value_len == strlen(value));
        CHECK_STATUS(icr_response_header(response, n, &name, &name_len, &value, &value_len),
                     ICR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(icr_response_header(response, 0, NULL, &name_len, &value, &value_len), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_response_body(response, &body, &body_len), ICR_STATUS_OK);
        CHECK(body_len > 0 && memchr(body, '{', body_len) != NULL);
        CHECK_STATUS(icr_response_status(NULL, &status), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_response_status(response, NULL), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_response_header_count(NULL, &n), ICR_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(icr_response_body(response, NULL, &body_len), ICR_STATUS_NULL_ARGUMENT);
        icr_response_free(response);

        /* Any status is a response: an organization the installation does not belong to (403),
         * with an absolute URL. */
        snprintf(path, sizeof path, "%s/organizations/00000000-0000-4000-8000-000000000000", base_url);
        response = NULL;
        CHECK_STATUS(icr_client_request(client, ICR_SCOPE_INSTALLATION, T(installation), S("GET"), T(path), NULL, 0,
                                        NULL, 0, &response),
                     ICR_STATUS_OK);
        CHECK_STATUS(icr_response_status(response, &status), ICR_STATUS_OK);
        CHECK(status == 403);
        icr_response_free(response);

        /* Refused before sending: a bad method, a bad scope, another host, a bad header. */
        response = NULL;
        CHECK_STATUS(icr_client_request(client, ICR_SCOPE_APP, NULL, 0, S("GE T"), S("/x"), NULL, 0, NULL, 0, &response),
                     ICR_STATUS_CONFIG);
        CHECK_STATUS(icr_client_request(client, 7, NULL, 0, S("GET"), S("/x"), NULL, 0, NULL, 0, &response),
                     ICR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(icr_client_request(client, ICR_SCOPE_APP, NULL, 0, S("GET"), S("http://127.0.0.2:9/x"), NULL, 0,
                                        NULL, 0, &response),
                     ICR_STATUS_CONFIG);
        {
            struct icr_header bad = {S("x-bad"), S("secret\nvalue")};
            CHECK_STATUS(icr_client_request(client, ICR_SCOPE_APP, NULL, 0, S("POST"), S("/x"), &bad, 1,
                                            (const uint8_t *)"{}", 2, &response),
                         ICR_STATUS_CONFIG);
            CHECK(strstr(last_error(), "secret") == NULL);
        }
        CHECK_STATUS(icr_client_request(client, ICR_SCOPE_APP, NULL, 0, S("GET"), S("/x"), NULL, 0, NULL, 0, NULL),
                     ICR_STATUS_NULL_ARGUMENT);
        CHECK(response == NULL);
    }

    /* The counters. */
    {
        char stats[1024];
        size_t needed = 0;
        CHECK_STATUS(icr_client_stats_json(client, stats, sizeof stats, &needed), ICR_STATUS_OK);
        CHECK(strstr(stats, "\"hits\":") != NULL && strstr(stats, "\"mints\":") != NULL);
        CHECK_STATUS(icr_client_stats_json(client, NULL, 0, &needed), ICR_STATUS_BUFFER_TOO_SMALL);
        CHECK(needed == strlen(stats) + 1);
        CHECK_STATUS(icr_client_stats_json(NULL, stats, sizeof stats, &needed), ICR_STATUS_NULL_ARGUMENT);
    }

    /* Revoking: one token, then every cached one. */
    CHECK_STATUS(icr_client_revoke(client, app_token.text, app_token.len), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_revoke(client, S("")), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_client_revoke(NULL, S("x")), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_client_revoke_all(client, &count), ICR_STATUS_OK);
    CHECK(count >= 1);
    CHECK_STATUS(icr_client_revoke_all(client, NULL), ICR_STATUS_NULL_ARGUMENT);
    /* A new token after revoking. */
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, b.text, sizeof b.text, &b.len,
                                               &b.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strcmp(a.text, b.text) != 0);

    icr_client_free(client);
    /* Every request was logged at DEBUG, and no record held a secret. */
    CHECK(log.requests >= 5);
    CHECK(log.secrets == 0);
    pthread_mutex_destroy(&log.lock);
}

/* Threads share one client with no lock of theirs: one mint between them. */
struct shared {
    icr_client *client;
    char first[256];
    int mismatches, failed;
    pthread_mutex_t lock;
};

static void *worker(void *arg) {
    struct shared *s = arg;
    for (int i = 0; i < 25; i++) {
        struct token t;
        if (icr_client_installation_token(s->client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                          &t.expires_at_ms) != ICR_STATUS_OK) {
            pthread_mutex_lock(&s->lock);
            s->failed++;
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        pthread_mutex_lock(&s->lock);
        if (s->first[0] == '\0') memcpy(s->first, t.text, t.len + 1);
        if (strcmp(s->first, t.text) != 0) s->mismatches++;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static void test_threads(void) {
    icr_app *app = keyed_app();
    struct shared s;
    pthread_t threads[4];
    char stats[1024];
    size_t needed;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    CHECK_STATUS(icr_client_new(app, NULL, &s.client), ICR_STATUS_OK);
    icr_app_free(app);
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, worker, &s);
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    CHECK(s.failed == 0 && s.mismatches == 0);
    CHECK_STATUS(icr_client_stats_json(s.client, stats, sizeof stats, &needed), ICR_STATUS_OK);
    CHECK(strstr(stats, "\"mints\":1,") != NULL);
    icr_client_free(s.client);
    pthread_mutex_destroy(&s.lock);
}

/* A signer: RS256 with the `openssl` command and the demo key (what a KMS would do), counting
 * its calls; `mode` 1 fails, 2 asks for a larger buffer first, 3 signs with garbage. */
struct signer {
    int calls, mode, jwt_like;
    char dir[64];
};

static uint32_t sign(void *user_data, const uint8_t *message, size_t message_len, uint8_t *signature,
                     size_t signature_cap, size_t *out_signature_len) {
    struct signer *s = user_data;
    char msg_path[128], sig_path[128], command[1024];
    FILE *f;
    size_t n;
    s->calls++;
    s->jwt_like = message_len > 20 && memcmp(message, "eyJ", 3) == 0 && memchr(message, '.', message_len) != NULL;
    if (s->mode == 1) return ICR_STATUS_SIGNING;
    if (s->mode == 2 && signature_cap < 2000) {
        *out_signature_len = 2000;
        return ICR_STATUS_BUFFER_TOO_SMALL;
    }
    if (s->mode == 3) {
        memset(signature, 7, 256);
        *out_signature_len = 256;
        return ICR_STATUS_OK;
    }
    snprintf(msg_path, sizeof msg_path, "%s/message", s->dir);
    snprintf(sig_path, sizeof sig_path, "%s/signature", s->dir);
    f = fopen(msg_path, "wb");
    if (f == NULL) return ICR_STATUS_SIGNING;
    fwrite(message, 1, message_len, f);
    fclose(f);
    snprintf(command, sizeof command, "openssl dgst -sha256 -sign '%s' -out '%s' '%s'", key_path, sig_path, msg_path);
    if (system(command) != 0) return ICR_STATUS_SIGNING;
    f = fopen(sig_path, "rb");
    if (f == NULL) return ICR_STATUS_SIGNING;
    n = fread(signature, 1, signature_cap, f);
    fclose(f);
    *out_signature_len = n;
    return ICR_STATUS_OK;
}

static void test_signer(void) {
    struct signer s;
    struct token t;
    size_t len;
    int64_t expires;
    char template[] = "/tmp/icr-c-signer-XXXXXX";
    icr_app *keyless = keyless_app(), *keyed = keyed_app();
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    memset(&s, 0, sizeof s);
    CHECK(mkdtemp(template) != NULL);
    snprintf(s.dir, sizeof s.dir, "%s", template);

    icr_client_options_new(&options);
    CHECK_STATUS(icr_client_options_set_signer(options, sign, &s), ICR_STATUS_OK);
    /* An app with its key takes no signer. */
    CHECK_STATUS(icr_client_new(keyed, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "icr_app_new_without_key") != NULL);

    /* Signed outside: one signature serves the mint. */
    CHECK_STATUS(icr_client_new(keyless, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(s.calls == 1 && s.jwt_like);
    CHECK_STATUS(icr_client_app_token(client, 0, t.text, sizeof t.text, &t.len, &t.expires_at_ms), ICR_STATUS_OK);
    CHECK(s.calls == 1); /* the JWT is cached */
    icr_client_free(client);

    /* A signer that asks for more room is called again with it. */
    s.calls = 0;
    s.mode = 2;
    CHECK_STATUS(icr_client_new(keyless, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &len, &expires),
                 ICR_STATUS_OK);
    CHECK(s.calls == 2);
    icr_client_free(client);

    /* A signer that fails: a signing error naming it. */
    s.mode = 1;
    CHECK_STATUS(icr_client_new(keyless, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &len, &expires),
                 ICR_STATUS_SIGNING);
    CHECK(strstr(last_error(), "the signer returned signing") != NULL);
    icr_client_free(client);

    /* A wrong signature: the registry refuses the JWT. */
    s.mode = 3;
    CHECK_STATUS(icr_client_new(keyless, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &len, &expires),
                 ICR_STATUS_UNAUTHORIZED);
    icr_client_free(client);

    icr_client_options_free(options);
    icr_app_free(keyless);
    icr_app_free(keyed);
    {
        char path[128];
        snprintf(path, sizeof path, "%s/message", s.dir);
        remove(path);
        snprintf(path, sizeof path, "%s/signature", s.dir);
        remove(path);
        rmdir(s.dir);
    }
}

/* An unreachable registry, and a Redis store that does not answer (tokens are minted without
 * it, and the log says so). */
static void test_unreachable(void) {
    icr_app *app = keyed_app();
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;
    struct log log;
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.lock, NULL);

    icr_client_options_new(&options);
    CHECK_STATUS(icr_client_options_set_base_url(options, S("http://127.0.0.1:9")), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_retries(options, 0), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_timeout_ms(options, 2000), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), "check the base URL") != NULL);
    icr_client_free(client);

    /* Plain http:// to another host is refused, unless allowed. */
    CHECK_STATUS(icr_client_options_set_base_url(options, S("http://192.0.2.1")), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), "refusing to send credentials over plain http://") != NULL);
    icr_client_free(client);

    CHECK_STATUS(icr_client_options_set_base_url(options, T(base_url)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_redis_url(options, S("redis://:hunter2@127.0.0.1:9/0")), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_log_sink(options, on_log, &log), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_OK);
    icr_client_free(client);
    CHECK(log.records > 0 && log.secrets == 0);
    icr_client_options_free(options);
    icr_app_free(app);
    pthread_mutex_destroy(&log.lock);
}

/* Two clients sharing a real Redis (ICR_TEST_REDIS_URL, started by run-tests.sh): the second
 * reads the token the first minted instead of minting. */
static void test_redis(const char *url) {
    icr_app *app = keyed_app();
    icr_client_options *options = NULL;
    icr_client *first = NULL, *second = NULL;
    struct token a, b;
    char stats[1024];
    size_t needed = 0;
    icr_client_options_new(&options);
    CHECK_STATUS(icr_client_options_set_redis_url(options, T(url)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &first), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &second), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_organization_token(first, T(organization), 0, a.text, sizeof a.text, &a.len,
                                               &a.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK_STATUS(icr_client_organization_token(second, T(organization), 0, b.text, sizeof b.text, &b.len,
                                               &b.expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strcmp(a.text, b.text) == 0);
    CHECK_STATUS(icr_client_stats_json(second, stats, sizeof stats, &needed), ICR_STATUS_OK);
    CHECK(strstr(stats, "\"mints\":0,") != NULL && strstr(stats, "\"shared_hits\":1,") != NULL);
    if (strstr(stats, "\"shared_hits\":1,") == NULL) fprintf(stderr, "stats: %s\n", stats);
    icr_client_free(first);
    icr_client_free(second);
    icr_client_options_free(options);
    icr_app_free(app);
}

int main(void) {
    base_url = getenv("ICR_BASE_URL");
    app_id = getenv("ICR_APP_ID");
    key_path = getenv("ICR_PRIVATE_KEY");
    installation = getenv("ICR_INSTALLATION_ID");
    organization = getenv("ICR_ORGANIZATION_ID");
    if (!base_url || !app_id || !key_path || !installation || !organization) {
        fprintf(stderr, "client: set ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY (a path), ICR_INSTALLATION_ID and "
                        "ICR_ORGANIZATION_ID (`icr-app mock` prints them)\n");
        return 2;
    }
    key = read_file(key_path, &key_len);
    if (key == NULL) {
        fprintf(stderr, "client: cannot read %s\n", key_path);
        return 2;
    }
    test_options();
    test_new_errors();
    test_proxy_and_ca_file();
    test_tokens_and_requests();
    test_threads();
    test_signer();
    test_unreachable();
    if (getenv("ICR_TEST_REDIS_URL") != NULL) {
        test_redis(getenv("ICR_TEST_REDIS_URL"));
    } else {
        printf("client: ICR_TEST_REDIS_URL not set: the Redis test did not run\n");
    }
    memset(key, 0, key_len);
    free(key);
    printf("client: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
