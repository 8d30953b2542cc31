/*
 * The sans-IO layer of libicr_app driven from C99 against a canned registry written here: no
 * network, no real clock (the test's clock starts at a fixed instant and jumps to each Sleep's
 * `until`). Run by bindings/c/run-tests.sh under ASan/UBSan and under Valgrind.
 *
 * usage: sans_io PATH_TO_RSA_PEM_KEY
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "icr_app.h"
#include "check.h"

/* The test's clock, Unix milliseconds. */
static int64_t now_ms = 1700000000000LL;

/* RFC 3339 (UTC, whole seconds) and HTTP date of `ms`. */
static void rfc3339(int64_t ms, char *out, size_t cap) {
    time_t secs = (time_t)(ms / 1000);
    struct tm *tm = gmtime(&secs);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%S.000Z", tm);
}

static void http_date(int64_t ms, char *out, size_t cap) {
    time_t secs = (time_t)(ms / 1000);
    struct tm *tm = gmtime(&secs);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", tm);
}

/* The `iat` claim of the JWT in `authorization` ("Bearer <header>.<claims>.<signature>"),
 * or -1: base64url-decodes the claims and reads the number after "iat":. */
static long long jwt_iat(const char *authorization) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char claims[1024];
    const char *start = strchr(authorization, '.'), *at;
    size_t out = 0;
    unsigned bits = 0, nbits = 0;
    if (start == NULL) {
        return -1;
    }
    for (start++; *start != '\0' && *start != '.' && out + 1 < sizeof claims; start++) {
        const char *digit = strchr(alphabet, *start);
        if (digit == NULL || *start == '\0') {
            return -1;
        }
        bits = (bits << 6) | (unsigned)(digit - alphabet);
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            claims[out++] = (char)((bits >> nbits) & 0xff);
        }
    }
    claims[out] = '\0';
    at = strstr(claims, "\"iat\":");
    return at == NULL ? -1 : strtoll(at + 6, NULL, 10);
}

/* ---- the canned registry ---- */

typedef struct registry {
    int mints;           /* access tokens minted */
    int flaky_failures;  /* connection failures still to give for i-flaky */
    int revokes;         /* DELETE /app/installations/token seen */
    int busy;            /* mints of i-busy answered so far */
    int64_t skew_ms;     /* the registry's clock minus the test's */
    int refused_jwts;    /* mints refused for an `iat` off the registry's clock */
    int requests;        /* the caller's own requests seen */
    char last_authorization[2048];
} registry;

typedef struct answer {
    int fail;            /* 1: no response, a connection failure */
    uint16_t status;
    char body[1024];
    icr_header headers[3];
    size_t header_count;
    char date[64];
} answer;

static int ends_with(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static void add_header(answer *a, const char *name, const char *value) {
    icr_header *h = &a->headers[a->header_count++];
    h->name = name;
    h->name_len = strlen(name);
    h->value = value;
    h->value_len = strlen(value);
}

/* Answers the Send step `op` is on, as the registry would. */
static void registry_answer(registry *reg, const icr_op *op, answer *a) {
    const char *method = NULL, *url = NULL;
    size_t method_len = 0, url_len = 0, count = 0, i;
    enum icr_purpose purpose = ICR_PURPOSE_OTHER;
    memset(a, 0, sizeof *a);
    CHECK_STATUS(icr_op_request_method(op, &method, &method_len), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_request_url(op, &url, &url_len), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_request_purpose(op, &purpose), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_request_header_count(op, &count), ICR_STATUS_OK);
    CHECK(method != NULL && method[method_len] == '\0');
    CHECK(url != NULL && url[url_len] == '\0' && strncmp(url, "http://registry.test/", 21) == 0);
    reg->last_authorization[0] = '\0';
    for (i = 0; i < count; i++) {
        const char *name = NULL, *value = NULL;
        size_t name_len = 0, value_len = 0;
        CHECK_STATUS(icr_op_request_header(op, i, &name, &name_len, &value, &value_len), ICR_STATUS_OK);
        CHECK(name[name_len] == '\0' && value[value_len] == '\0');
        if (strcmp(name, "authorization") == 0 && value_len < sizeof reg->last_authorization) {
            memcpy(reg->last_authorization, value, value_len + 1);
        }
    }
    /* Past the last header: an invalid argument, nothing written. */
    {
        const char *name = (const char *)1, *value = NULL;
        size_t name_len = 7, value_len = 0;
        CHECK_STATUS(icr_op_request_header(op, count, &name, &name_len, &value, &value_len),
                     ICR_STATUS_INVALID_ARGUMENT);
        CHECK(name == (const char *)1 && name_len == 7);
    }
    http_date(now_ms + reg->skew_ms, a->date, sizeof a->date);
    add_header(a, "content-type", "application/json");
    add_header(a, "date", a->date);

    if (strcmp(method, "POST") == 0 && ends_with(url, url_len, "/accessTokens")) {
        char created[32], expires[32];
        long long iat = jwt_iat(reg->last_authorization), registry_now = (now_ms + reg->skew_ms) / 1000;
        CHECK(purpose == ICR_PURPOSE_MINT);
        CHECK(strncmp(reg->last_authorization, "Bearer eyJ", 10) == 0);
        CHECK(iat > 0);
        {
            const uint8_t *body = NULL;
            size_t body_len = 0;
            CHECK_STATUS(icr_op_request_body(op, &body, &body_len), ICR_STATUS_OK);
            CHECK(body != NULL);
        }
        /* The registry refuses a JWT issued in its future or more than 10 minutes ago. */
        if (iat > registry_now + 30 || iat < registry_now - 600) {
            reg->refused_jwts++;
            a->status = 401;
            strcpy(a->body, "{\"statusCode\":401,\"message\":\"'iat' is in the future\",\"error\":\"Unauthorized\"}");
            return;
        }
        if (ends_with(url, url_len, "/installations/i-404/accessTokens")) {
            a->status = 404;
            strcpy(a->body, "{\"statusCode\":404,\"message\":\"Installation not found\",\"error\":\"Not Found\"}");
            return;
        }
        if (ends_with(url, url_len, "/installations/i-429/accessTokens")) {
            a->status = 429;
            add_header(a, "retry-after", "1");
            strcpy(a->body, "{\"statusCode\":429,\"message\":\"Slow down\"}");
            return;
        }
        if (ends_with(url, url_len, "/installations/i-busy/accessTokens") && reg->busy < 2) {
            a->status = reg->busy == 0 ? 429 : 503;
            add_header(a, "retry-after", reg->busy == 0 ? "2" : "1");
            strcpy(a->body, "{\"message\":\"busy\"}");
            reg->busy++;
            return;
        }
        if (ends_with(url, url_len, "/installations/i-flaky/accessTokens") && reg->flaky_failures > 0) {
            reg->flaky_failures--;
            a->fail = 1;
            return;
        }
        reg->mints++;
        rfc3339(now_ms + reg->skew_ms, created, sizeof created);
        rfc3339(now_ms + reg->skew_ms + 2 * 3600 * 1000, expires, sizeof expires);
        a->status = 201;
        sprintf(a->body,
                "{\"token\":\"crs_%04d\",\"createdAt\":\"%s\",\"expiresAt\":\"%s\","
                "\"permissions\":{\"projects\":\"read\"}}",
                reg->mints, created, expires);
        return;
    }
    if (strcmp(method, "GET") == 0 && ends_with(url, url_len, "/app/installations/i-1")) {
        CHECK(purpose == ICR_PURPOSE_CALL);
        a->status = 200;
        strcpy(a->body, "{\"id\":\"i-1\",\"appId\":\"67890\",\"permissions\":{},\"color\":\"blue\"}");
        return;
    }
    if (strcmp(method, "DELETE") == 0 && ends_with(url, url_len, "/app/installations/token")) {
        CHECK(purpose == ICR_PURPOSE_REVOKE);
        CHECK(strncmp(reg->last_authorization, "Bearer crs_", 11) == 0);
        reg->revokes++;
        a->status = 204;
        a->header_count = 1; /* no content-type */
        a->headers[0].name = "date";
        a->headers[0].name_len = 4;
        a->headers[0].value = a->date;
        a->headers[0].value_len = strlen(a->date);
        return;
    }
    /* The caller's own request. */
    CHECK(purpose == ICR_PURPOSE_REQUEST);
    if (strcmp(method, "POST") == 0) {
        const uint8_t *body = NULL;
        size_t body_len = 0;
        CHECK_STATUS(icr_op_request_body(op, &body, &body_len), ICR_STATUS_OK);
        CHECK(body_len == 7 && memcmp(body, "payload", 7) == 0);
    }
    reg->requests++;
    a->status = 200;
    a->header_count = 0;
    add_header(a, "content-type", "text/plain");
    add_header(a, "x-test", "yes");
    strcpy(a->body, "hello");
}

/* ---- a shared token store, in memory: the driver's side, with Redis semantics ---- */

#define STORE_SLOTS 16

typedef struct store_entry {
    int used;
    char key[256];
    uint8_t value[2048];
    size_t len;
    int64_t expires_ms; /* on the test's clock */
} store_entry;

typedef struct mem_store {
    store_entry entries[STORE_SLOTS];
    int fail;           /* 1: every command fails (the store is down) */
    int gets, hits, leases, leases_refused, puts, releases, deletes, failures;
} mem_store;

/* The live entry named `key` (`key_len` bytes), or NULL; an expired one is dropped. */
static store_entry *store_find(mem_store *st, const char *key, size_t key_len) {
    int i;
    for (i = 0; i < STORE_SLOTS; i++) {
        store_entry *e = &st->entries[i];
        if (e->used && strlen(e->key) == key_len && memcmp(e->key, key, key_len) == 0) {
            if (e->expires_ms <= now_ms) {
                e->used = 0;
                return NULL;
            }
            return e;
        }
    }
    return NULL;
}

/* Sets `key` to `value` for `ttl_ms`. */
static void store_set(mem_store *st, const char *key, size_t key_len, const uint8_t *value, size_t len,
                      uint64_t ttl_ms) {
    store_entry *e = store_find(st, key, key_len);
    int i;
    for (i = 0; e == NULL && i < STORE_SLOTS; i++) {
        if (!st->entries[i].used) {
            e = &st->entries[i];
        }
    }
    CHECK(e != NULL && key_len < sizeof e->key && len <= sizeof e->value);
    if (e == NULL || key_len >= sizeof e->key || len > sizeof e->value) {
        return;
    }
    e->used = 1;
    memcpy(e->key, key, key_len);
    e->key[key_len] = '\0';
    memcpy(e->value, value, len);
    e->len = len;
    e->expires_ms = now_ms + (int64_t)ttl_ms;
}

/* Runs the command of the Store step `id` that `op` is on, and answers it. Each command is
 * atomic here as it must be on a real store (one thread; on Redis, a script). */
static void store_run(mem_store *st, icr_op *op, icr_app *app, uint64_t id) {
    enum icr_store_command kind = (enum icr_store_command)0;
    const char *key = NULL, *lease = NULL;
    const uint8_t *value = NULL, *owner = NULL;
    size_t key_len = 0, value_len = 0, lease_len = 0, owner_len = 0;
    uint64_t ttl_ms = 0;
    store_entry *e;
    CHECK_STATUS(icr_op_store_command(op, &kind, &key, &key_len), ICR_STATUS_OK);
    CHECK(key != NULL && key[key_len] == '\0' && strlen(key) == key_len);
    CHECK(strncmp(key, "icr-app:v2:", 11) == 0 && strchr(key, '{') != NULL);
    /* A Put alone releases a lease. */
    if (kind != ICR_STORE_COMMAND_PUT) {
        CHECK_STATUS(icr_op_store_lease(op, &lease, &lease_len, &owner, &owner_len), ICR_STATUS_WRONG_STATE);
        CHECK(lease == NULL && owner == NULL);
    }
    if (st->fail) {
        st->failures++;
        CHECK_STATUS(icr_op_handle_store_failure(op, app, id, S("connection refused"), now_ms), ICR_STATUS_OK);
        return;
    }
    switch (kind) {
    case ICR_STORE_COMMAND_GET:
        /* A Get has a key only. */
        CHECK_STATUS(icr_op_store_value(op, &value, &value_len), ICR_STATUS_WRONG_STATE);
        CHECK_STATUS(icr_op_store_ttl_ms(op, &ttl_ms), ICR_STATUS_WRONG_STATE);
        CHECK(value == NULL && ttl_ms == 0);
        /* Another reply than a value: refused, and the step is still there. */
        CHECK_STATUS(icr_op_handle_store_leased(op, app, id, 1, now_ms), ICR_STATUS_WRONG_STATE);
        CHECK(strstr(last_error(), "icr_op_handle_store_value") != NULL);
        CHECK_STATUS(icr_op_handle_store_done(op, app, id, now_ms), ICR_STATUS_WRONG_STATE);
        st->gets++;
        e = store_find(st, key, key_len);
        if (e != NULL) {
            st->hits++;
            CHECK_STATUS(icr_op_handle_store_value(op, app, id, 1, e->value, e->len, now_ms), ICR_STATUS_OK);
        } else {
            /* Not found: the value is not read. */
            CHECK_STATUS(icr_op_handle_store_value(op, app, id, 0, NULL, 99, now_ms), ICR_STATUS_OK);
        }
        break;
    case ICR_STORE_COMMAND_LEASE:
        /* SET key owner NX PX ttl */
        CHECK_STATUS(icr_op_store_value(op, &value, &value_len), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_store_ttl_ms(op, &ttl_ms), ICR_STATUS_OK);
        CHECK(value_len == 32 && ttl_ms > 0);
        CHECK(ends_with(key, key_len, ":lease"));
        CHECK_STATUS(icr_op_handle_store_done(op, app, id, now_ms), ICR_STATUS_WRONG_STATE);
        st->leases++;
        if (store_find(st, key, key_len) != NULL) {
            st->leases_refused++;
            CHECK_STATUS(icr_op_handle_store_leased(op, app, id, 0, now_ms), ICR_STATUS_OK);
        } else {
            store_set(st, key, key_len, value, value_len, ttl_ms);
            CHECK_STATUS(icr_op_handle_store_leased(op, app, id, 1, now_ms), ICR_STATUS_OK);
        }
        break;
    case ICR_STORE_COMMAND_PUT:
        /* SET key value PX ttl; then DEL lease if it holds owner: one step. */
        CHECK_STATUS(icr_op_store_value(op, &value, &value_len), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_store_ttl_ms(op, &ttl_ms), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_store_lease(op, &lease, &lease_len, &owner, &owner_len), ICR_STATUS_OK);
        CHECK(value_len > 17 && ttl_ms > 3600 * 1000 && ttl_ms <= 2 * 3600 * 1000);
        /* The lease is the entry's. */
        CHECK(lease[lease_len] == '\0' && lease_len == key_len + 6 && strncmp(lease, key, key_len) == 0 &&
              strcmp(lease + key_len, ":lease") == 0);
        CHECK(owner_len == 32);
        CHECK_STATUS(icr_op_handle_store_value(op, app, id, 0, NULL, 0, now_ms), ICR_STATUS_WRONG_STATE);
        st->puts++;
        store_set(st, key, key_len, value, value_len, ttl_ms);
        e = store_find(st, lease, lease_len);
        if (e != NULL && e->len == owner_len && memcmp(e->value, owner, owner_len) == 0) {
            e->used = 0;
            st->releases++;
        }
        CHECK_STATUS(icr_op_handle_store_done(op, app, id, now_ms), ICR_STATUS_OK);
        break;
    case ICR_STORE_COMMAND_DELETE:
        /* DEL key if its value starts with prefix: one step. */
        CHECK_STATUS(icr_op_store_value(op, &value, &value_len), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_store_ttl_ms(op, &ttl_ms), ICR_STATUS_WRONG_STATE);
        CHECK(value_len > 0);
        e = store_find(st, key, key_len);
        if (e != NULL && e->len >= value_len && memcmp(e->value, value, value_len) == 0) {
            e->used = 0;
            st->deletes++;
        }
        CHECK_STATUS(icr_op_handle_store_done(op, app, id, now_ms), ICR_STATUS_OK);
        break;
    default:
        CHECK(!"an unknown store command");
    }
    {
        /* The command's loans ended with the answer. */
        CHECK_STATUS(icr_op_store_command(op, &kind, &key, &key_len), ICR_STATUS_WRONG_STATE);
        CHECK_STATUS(icr_op_handle_store_done(op, app, id, now_ms), ICR_STATUS_WRONG_STATE);
    }
}

/* Answers the Send step `id` that `op` is on, as the registry would. */
static void answer_send(icr_op *op, icr_app *app, registry *reg, uint64_t id) {
    answer a;
    registry_answer(reg, op, &a);
    if (a.fail) {
        CHECK_STATUS(icr_op_handle_failure(op, app, id, ICR_TRANSPORT_KIND_CONNECT, S("connection refused"), now_ms),
                     ICR_STATUS_OK);
    } else {
        CHECK_STATUS(icr_op_handle_response(op, app, id, a.status, a.headers, a.header_count,
                                            (const uint8_t *)a.body, strlen(a.body), now_ms),
                     ICR_STATUS_OK);
    }
    {
        /* The request's loans ended with the answer. */
        const char *url = NULL;
        size_t url_len = 0;
        CHECK_STATUS(icr_op_request_url(op, &url, &url_len), ICR_STATUS_WRONG_STATE);
        CHECK(url == NULL);
    }
}

/* Where drive_until stopped, and how many Send steps it answered. */
typedef struct driven {
    int sends;
    enum icr_step step;
    uint64_t id;
    int64_t until;
} driven;

#define STOP(step) (1u << (step))

/* Drives `op` against the registry and the store `st` (NULL: none attached) until Done, or
 * until a step in the mask `stop` (STOP(ICR_STEP_SEND) | ...), which it returns without
 * performing; `sign` answers Sign steps with a dummy signature (1) or a signer failure (0). */
static driven drive_until(icr_op *op, icr_app *app, registry *reg, int sign, mem_store *st, unsigned stop) {
    driven d;
    int polls;
    memset(&d, 0, sizeof d);
    for (polls = 0; polls < 100; polls++) {
        uint64_t change = 0;
        d.step = (enum icr_step)0;
        now_ms += 1;
        CHECK_STATUS(icr_op_poll(op, app, now_ms, &d.step, &d.id, &d.until, &change), ICR_STATUS_OK);
        if (d.step == ICR_STEP_DONE || (stop & STOP(d.step)) != 0) {
            return d;
        }
        switch (d.step) {
        case ICR_STEP_SEND:
            d.sends++;
            answer_send(op, app, reg, d.id);
            break;
        case ICR_STEP_STORE:
            CHECK(st != NULL);
            if (st == NULL) {
                return d;
            }
            store_run(st, op, app, d.id);
            break;
        case ICR_STEP_SIGN: {
            const uint8_t *message = NULL;
            size_t message_len = 0;
            CHECK_STATUS(icr_op_sign_message(op, &message, &message_len), ICR_STATUS_OK);
            CHECK(message_len > 10 && memcmp(message, "eyJ", 3) == 0);
            if (sign) {
                uint8_t signature[256];
                memset(signature, 0x5a, sizeof signature);
                CHECK_STATUS(icr_op_handle_signature(op, app, d.id, signature, sizeof signature, now_ms),
                             ICR_STATUS_OK);
            } else {
                CHECK_STATUS(icr_op_handle_signature_failure(op, app, d.id, S("the KMS is down"), now_ms),
                             ICR_STATUS_OK);
            }
            break;
        }
        case ICR_STEP_SLEEP:
        case ICR_STEP_WAIT:
            CHECK(d.until >= now_ms);
            now_ms = d.until;
            break;
        default:
            CHECK(!"an unexpected step");
            return d;
        }
    }
    CHECK(!"the operation did not finish in 100 polls");
    return d;
}

/* Drives `op` to Done against the registry, with no store; returns the number of Send steps. */
static int drive(icr_op *op, icr_app *app, registry *reg, int sign) {
    driven d = drive_until(op, app, reg, sign, NULL, 0);
    CHECK(d.step == ICR_STEP_DONE);
    return d.sends;
}

static icr_app *new_app(const uint8_t *key, size_t key_len) {
    icr_app *app = NULL;
    CHECK_STATUS(icr_app_new(S("67890"), key, key_len, S("http://registry.test"), &app), ICR_STATUS_OK);
    return app;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long size;
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return buf;
}

/* ---- the tests ---- */

static void test_installation_token(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL, *again = NULL;
    const char *token = NULL, *json = NULL;
    size_t token_len = 0, json_len = 0;
    int64_t expires = 0, minted_at;
    uint64_t changes_before = 0, changes_after = 0;
    char expected_json[256], expires_text[32];
    memset(&reg, 0, sizeof reg);

    CHECK_STATUS(icr_app_changes(app, &changes_before), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    /* Before Done: no result, no request. */
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_WRONG_STATE);
    CHECK(token == NULL && token_len == 0 && expires == 0);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_request_url(op, &token, &token_len), ICR_STATUS_WRONG_STATE);
    minted_at = now_ms + 1;
    CHECK(drive(op, app, &reg, 1) == 1);
    CHECK(reg.mints == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_OK);
    CHECK(token_len == 8 && strcmp(token, "crs_0001") == 0);
    CHECK(expires == (minted_at / 1000) * 1000 + 2 * 3600 * 1000);
    CHECK_STATUS(icr_op_token_json(op, &json, &json_len), ICR_STATUS_OK);
    rfc3339(expires, expires_text, sizeof expires_text);
    sprintf(expected_json, "{\"token\":\"crs_0001\",\"expiresAt\":\"%s\",\"permissions\":{\"projects\":\"read\"}}",
            expires_text);
    CHECK(json_len == strlen(json) && strcmp(json, expected_json) == 0);
    if (strcmp(json, expected_json) != 0) {
        fprintf(stderr, "  got      %s\n  expected %s\n", json, expected_json);
    }
    /* Not the other results; the request is gone once Done. */
    CHECK_STATUS(icr_op_json(op, &json, &json_len), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_count(op, &json_len), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_request_method(op, &json, &json_len), ICR_STATUS_WRONG_STATE);
    {
        enum icr_status status = ICR_STATUS_OK;
        uint16_t http = 1;
        int64_t retry = 1;
        CHECK_STATUS(icr_op_error(op, &status, &http, &retry), ICR_STATUS_WRONG_STATE);
        CHECK(http == 1 && retry == 1);
    }
    /* Polling a finished operation: Done again, the result kept. */
    {
        enum icr_step step = ICR_STEP_SEND;
        uint64_t id = 9, change = 9;
        int64_t until = 9;
        CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
        CHECK(step == ICR_STEP_DONE && id == 0 && until == 0 && change == 0);
        CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    }
    CHECK_STATUS(icr_app_changes(app, &changes_after), ICR_STATUS_OK);
    CHECK(changes_after != changes_before);

    /* The same token again: a cache hit, no request. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &again), ICR_STATUS_OK);
    CHECK(drive(again, app, &reg, 1) == 0);
    CHECK_STATUS(icr_op_token(again, &token, &token_len, &expires), ICR_STATUS_OK);
    CHECK(strcmp(token, "crs_0001") == 0);
    icr_op_free(again);
    /* More life asked than a token of this registry has (two hours): refused, nothing minted. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 3 * 3600 * 1000, &again), ICR_STATUS_OK);
    drive(again, app, &reg, 1);
    CHECK_STATUS(icr_op_result(again), ICR_STATUS_CONFIG);
    CHECK(reg.mints == 1);
    icr_op_free(again);

    icr_op_free(op);
    icr_app_free(app);
}

static void test_not_found(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL;
    enum icr_status status = ICR_STATUS_OK;
    uint16_t http = 0;
    int64_t retry = 0;
    char message[512];
    size_t needed = 0;
    const char *token = (const char *)1;
    size_t token_len = 5;
    int64_t expires = 5;
    memset(&reg, 0, sizeof reg);

    CHECK_STATUS(icr_op_installation_token(S("i-404"), 0, &op), ICR_STATUS_OK);
    drive(op, app, &reg, 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_NOT_FOUND);
    CHECK(strstr(last_error(), "Installation not found") != NULL);
    CHECK_STATUS(icr_op_error(op, &status, &http, &retry), ICR_STATUS_OK);
    CHECK(status == ICR_STATUS_NOT_FOUND && http == 404 && retry == -1);
    CHECK_STATUS(icr_op_error_message(op, message, sizeof message, &needed), ICR_STATUS_OK);
    CHECK(needed == strlen(message) + 1 && strstr(message, "Installation not found") != NULL);
    /* Too small a buffer: cut, NUL-terminated, the length needed written. */
    {
        char small[8];
        size_t small_needed = 0;
        CHECK_STATUS(icr_op_error_message(op, small, sizeof small, &small_needed), ICR_STATUS_BUFFER_TOO_SMALL);
        CHECK(small_needed == needed && strlen(small) == 7 && strncmp(small, message, 7) == 0);
        /* And the last error is still the operation's message. */
        CHECK(strcmp(last_error(), message) == 0);
        /* Length only. */
        small_needed = 0;
        CHECK_STATUS(icr_op_error_message(op, NULL, 0, &small_needed), ICR_STATUS_BUFFER_TOO_SMALL);
        CHECK(small_needed == needed);
    }
    /* No token: nothing written. */
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_WRONG_STATE);
    CHECK(token == (const char *)1 && token_len == 5 && expires == 5);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_transport_failure_then_token(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL;
    const char *token = NULL;
    size_t token_len = 0;
    int64_t expires = 0, start = now_ms;
    memset(&reg, 0, sizeof reg);
    reg.flaky_failures = 1;

    CHECK_STATUS(icr_op_installation_token(S("i-flaky"), 0, &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 2);
    CHECK(now_ms - start > 100); /* it slept (backed off) before trying again */
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_OK);
    CHECK(strcmp(token, "crs_0001") == 0);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_clock_skew(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL;
    const char *token = NULL;
    size_t token_len = 0;
    int64_t expires = 0;
    memset(&reg, 0, sizeof reg);
    reg.skew_ms = -2 * 3600 * 1000; /* the registry is two hours behind: our JWT is in its future */

    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 2);
    CHECK(reg.refused_jwts == 1); /* refused once; the core learned the clock from Date */
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_OK);
    CHECK(strcmp(token, "crs_0001") == 0);
    icr_op_free(op);
    /* The next JWT is on the registry's clock at once. */
    CHECK_STATUS(icr_op_installation_token(S("i-2"), 0, &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    CHECK(reg.refused_jwts == 1);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_retry_after(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL;
    const char *token = NULL;
    size_t token_len = 0;
    int64_t expires = 0, start = now_ms, retry = 0;
    enum icr_status status = ICR_STATUS_OK;
    uint16_t http = 0;
    memset(&reg, 0, sizeof reg);

    /* A 429 then a 503, each with Retry-After: slept through, then a token. */
    CHECK_STATUS(icr_op_installation_token(S("i-busy"), 0, &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 3);
    CHECK(now_ms - start >= 3000);
    CHECK_STATUS(icr_op_token(op, &token, &token_len, &expires), ICR_STATUS_OK);
    CHECK(strcmp(token, "crs_0001") == 0);
    icr_op_free(op);

    /* Always 429: in the end the rate-limited status, with the HTTP status and Retry-After. */
    CHECK_STATUS(icr_op_installation_token(S("i-429"), 0, &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) >= 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_RATE_LIMITED);
    CHECK(strstr(last_error(), "Slow down") != NULL);
    CHECK_STATUS(icr_op_error(op, &status, &http, &retry), ICR_STATUS_OK);
    CHECK(status == ICR_STATUS_RATE_LIMITED && http == 429 && retry >= 1000);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_other_operations(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = new_app(key, key_len);
    icr_op *op = NULL;
    const char *text = NULL;
    size_t len = 0, count = 0;
    int64_t expires = 0;
    uint16_t status = 0;
    memset(&reg, 0, sizeof reg);

    /* The app JWT: no request. */
    CHECK_STATUS(icr_op_app_jwt(&op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 0);
    CHECK_STATUS(icr_op_jwt(op, &text, &len, &expires), ICR_STATUS_OK);
    CHECK(len > 100 && strncmp(text, "eyJ", 3) == 0 && text[len] == '\0');
    CHECK(expires > now_ms && expires <= now_ms + 10 * 60 * 1000);
    CHECK_STATUS(icr_op_token(op, &text, &len, &expires), ICR_STATUS_WRONG_STATE);
    icr_op_free(op);

    /* One installation, as JSON (unknown fields kept). */
    CHECK_STATUS(icr_op_installation(S("i-1"), &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 1);
    CHECK_STATUS(icr_op_json(op, &text, &len), ICR_STATUS_OK);
    CHECK(strstr(text, "\"id\":\"i-1\"") != NULL && strstr(text, "\"color\":\"blue\"") != NULL);
    icr_op_free(op);

    /* A request as installation i-1: a mint, then the request with the token. */
    {
        icr_header headers[1];
        const char *name = NULL, *value = NULL;
        size_t name_len = 0, value_len = 0, i;
        const uint8_t *body = NULL;
        int seen = 0;
        headers[0].name = "x-mine";
        headers[0].name_len = 6;
        headers[0].value = "1";
        headers[0].value_len = 1;
        CHECK_STATUS(icr_op_send_as(app, ICR_SCOPE_INSTALLATION, S("i-1"), S("GET"), S("/projects"), headers, 1,
                                    NULL, 0, &op),
                     ICR_STATUS_OK);
        CHECK(drive(op, app, &reg, 1) == 2);
        CHECK(reg.requests == 1 && strcmp(reg.last_authorization, "Bearer crs_0001") == 0);
        CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_response_status(op, &status), ICR_STATUS_OK);
        CHECK(status == 200);
        CHECK_STATUS(icr_op_response_header_count(op, &count), ICR_STATUS_OK);
        for (i = 0; i < count; i++) {
            CHECK_STATUS(icr_op_response_header(op, i, &name, &name_len, &value, &value_len), ICR_STATUS_OK);
            if (strcmp(name, "x-test") == 0 && strcmp(value, "yes") == 0) {
                seen = 1;
            }
        }
        CHECK(seen);
        CHECK_STATUS(icr_op_response_header(op, count, &name, &name_len, &value, &value_len),
                     ICR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(icr_op_response_body(op, &body, &len), ICR_STATUS_OK);
        CHECK(len == 5 && memcmp(body, "hello", 5) == 0);
        icr_op_free(op);
        /* A POST with a body, as the app. */
        CHECK_STATUS(icr_op_send_as(app, ICR_SCOPE_APP, NULL, 0, S("POST"), S("/things"), NULL, 0,
                                    (const uint8_t *)"payload", 7, &op),
                     ICR_STATUS_OK);
        CHECK(drive(op, app, &reg, 1) == 2);
        CHECK(reg.requests == 2);
        CHECK_STATUS(icr_op_response_status(op, &status), ICR_STATUS_OK);
        CHECK(status == 200);
        icr_op_free(op);
        /* A bad method or scope is refused when the operation is made. */
        op = NULL;
        CHECK_STATUS(icr_op_send_as(app, ICR_SCOPE_APP, NULL, 0, S("G T"), S("/x"), NULL, 0, NULL, 0, &op),
                     ICR_STATUS_CONFIG);
        CHECK_STATUS(icr_op_send_as(app, 7, NULL, 0, S("GET"), S("/x"), NULL, 0, NULL, 0, &op),
                     ICR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(icr_op_send_as(app, ICR_SCOPE_APP, NULL, 0, S("GET"), S("/x"), NULL, 2, NULL, 0, &op),
                     ICR_STATUS_NULL_ARGUMENT);
        CHECK(op == NULL);
    }

    /* Revoke every cached token. */
    CHECK_STATUS(icr_op_revoke_all(&op), ICR_STATUS_OK);
    drive(op, app, &reg, 1);
    CHECK_STATUS(icr_op_count(op, &count), ICR_STATUS_OK);
    CHECK(count == 2 && reg.revokes == 2); /* the installation's token and the app's */
    icr_op_free(op);

    /* Revoke one token. */
    CHECK_STATUS(icr_op_revoke(S("crs_9999"), &op), ICR_STATUS_OK);
    CHECK(drive(op, app, &reg, 1) == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    CHECK(reg.revokes == 3);
    icr_op_free(op);

    /* Abandoned in flight: the next operation mints at once instead of waiting. */
    {
        enum icr_step step = ICR_STEP_DONE;
        uint64_t id = 0, change = 0, before = 0, after = 0;
        int64_t until = 0;
        icr_op *next = NULL;
        CHECK_STATUS(icr_op_installation_token(S("i-2"), 0, &op), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
        CHECK(step == ICR_STEP_SEND);
        /* A second operation for the same scope waits for the first. */
        CHECK_STATUS(icr_op_installation_token(S("i-2"), 0, &next), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_poll(next, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
        CHECK(step == ICR_STEP_WAIT && until > now_ms);
        CHECK_STATUS(icr_app_changes(app, &before), ICR_STATUS_OK);
        CHECK(before == change);
        CHECK_STATUS(icr_op_abandon(op, app, now_ms), ICR_STATUS_OK);
        CHECK_STATUS(icr_app_changes(app, &after), ICR_STATUS_OK);
        CHECK(after != before);
        CHECK_STATUS(icr_op_poll(next, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
        CHECK(step == ICR_STEP_SEND);
        CHECK_STATUS(icr_op_abandon(next, app, now_ms), ICR_STATUS_OK);
        icr_op_free(next);
        icr_op_free(op);
    }

    /* The refresher never finishes: poll once, abandon. */
    {
        enum icr_step step = ICR_STEP_DONE;
        uint64_t id = 0, change = 0;
        int64_t until = 0;
        CHECK_STATUS(icr_op_refresher(app, &op), ICR_STATUS_OK);
        CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
        CHECK(step != ICR_STEP_DONE);
        CHECK_STATUS(icr_op_abandon(op, app, now_ms), ICR_STATUS_OK);
        icr_op_free(op);
    }

    /* The other constructors make operations. */
    CHECK_STATUS(icr_op_organization_token(S("org-1"), 0, &op), ICR_STATUS_OK);
    icr_op_free(op);
    CHECK_STATUS(icr_op_organization_installation(S("org-1"), &op), ICR_STATUS_OK);
    icr_op_free(op);
    CHECK_STATUS(icr_op_app_token(0, &op), ICR_STATUS_OK);
    icr_op_free(op);
    CHECK_STATUS(icr_op_installations_page(10, 0, &op), ICR_STATUS_OK);
    icr_op_free(op);
    CHECK_STATUS(icr_op_all_installations(10, &op), ICR_STATUS_OK);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_keyless_app(void) {
    registry reg;
    icr_app *app = NULL;
    icr_op *op = NULL;
    const char *text = NULL;
    size_t len = 0;
    int64_t expires = 0;
    enum icr_status status = ICR_STATUS_OK;
    uint16_t http = 1;
    int64_t retry = 0;
    memset(&reg, 0, sizeof reg);

    CHECK_STATUS(icr_app_new_without_key(S("67890"), NULL, 0, &app), ICR_STATUS_OK);
    /* The signer fails: the operation ends with the signing status. */
    CHECK_STATUS(icr_op_app_jwt(&op), ICR_STATUS_OK);
    drive(op, app, &reg, 0);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_SIGNING);
    CHECK(strstr(last_error(), "the KMS is down") != NULL);
    CHECK_STATUS(icr_op_error(op, &status, &http, &retry), ICR_STATUS_OK);
    CHECK(status == ICR_STATUS_SIGNING && http == 0 && retry == -1);
    icr_op_free(op);
    /* The signer signs: a JWT, whose signature the registry would check. */
    CHECK_STATUS(icr_op_app_jwt(&op), ICR_STATUS_OK);
    drive(op, app, &reg, 1);
    CHECK_STATUS(icr_op_jwt(op, &text, &len, &expires), ICR_STATUS_OK);
    CHECK(strncmp(text, "eyJ", 3) == 0 && strchr(text, '.') != NULL);
    /* An empty signature is refused. */
    CHECK_STATUS(icr_op_handle_signature(op, app, 1, NULL, 0, now_ms), ICR_STATUS_INVALID_ARGUMENT);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_errors(const uint8_t *key, size_t key_len) {
    static const char bad_key[] =
        "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETKEYMATERIALxyz0123456789\n-----END RSA PRIVATE KEY-----\n";
    icr_app *app = (icr_app *)1, *good = NULL;
    icr_op *op = (icr_op *)1;
    char buf[512];
    size_t needed = 0;
    enum icr_step step = ICR_STEP_DONE;
    uint64_t id = 0, change = 0;
    int64_t until = 0;

    /* A bad key: the key status, a message that does not quote it, nothing written. */
    CHECK_STATUS(icr_app_new(S("67890"), (const uint8_t *)bad_key, sizeof bad_key - 1, NULL, 0, &app),
                 ICR_STATUS_KEY);
    CHECK(app == (icr_app *)1);
    CHECK(strlen(last_error()) > 10);
    CHECK(strstr(last_error(), "TOPSECRET") == NULL && strstr(last_error(), "xyz0123") == NULL);
    CHECK_STATUS(icr_app_new(S("67890"), (const uint8_t *)"not a key", 9, NULL, 0, &app), ICR_STATUS_KEY);
    CHECK_STATUS(icr_app_new(S("67890"), NULL, 0, NULL, 0, &app), ICR_STATUS_KEY);
    CHECK(app == (icr_app *)1);
    /* Bad settings. */
    CHECK_STATUS(icr_app_new(S(""), key, key_len, NULL, 0, &app), ICR_STATUS_CONFIG);
    CHECK_STATUS(icr_app_new(S("67890"), key, key_len, S("ftp://x"), &app), ICR_STATUS_CONFIG);
    CHECK_STATUS(icr_app_new(S("67\xff"), key, key_len, NULL, 0, &app), ICR_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "UTF-8") != NULL);
    CHECK_STATUS(icr_op_installation_token(S("has space"), 0, &op), ICR_STATUS_CONFIG);
    CHECK_STATUS(icr_op_installation_token(S(""), 0, &op), ICR_STATUS_CONFIG);
    CHECK_STATUS(icr_op_revoke(NULL, 0, &op), ICR_STATUS_INVALID_ARGUMENT);
    CHECK(op == (icr_op *)1);

    /* NULL pointers: a status, never a crash. */
    CHECK_STATUS(icr_app_new(S("67890"), key, key_len, NULL, 0, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK(strstr(last_error(), "out") != NULL);
    CHECK_STATUS(icr_app_new(NULL, 5, key, key_len, NULL, 0, &app), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_app_new(S("67890"), NULL, 10, NULL, 0, &app), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_app_new_without_key(S("67890"), NULL, 0, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_app_changes(NULL, &change), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_installation_token(NULL, 3, 0, &op), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_app_jwt(NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_poll(NULL, NULL, 0, &step, &id, &until, &change), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_result(NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_token(NULL, NULL, NULL, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_response(NULL, NULL, 1, 200, NULL, 0, NULL, 0, 0), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_abandon(NULL, NULL, 0), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_refresher(NULL, &op), ICR_STATUS_NULL_ARGUMENT);
    CHECK(op == (icr_op *)1);
    CHECK_STATUS(icr_last_error(buf, sizeof buf, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_last_error(NULL, 10, &needed), ICR_STATUS_NULL_ARGUMENT);
    icr_app_free(NULL);
    icr_op_free(NULL);

    /* With live handles: NULL out-parameters and bad arguments. */
    good = new_app(key, key_len);
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_poll(op, good, now_ms, NULL, &id, &until, &change), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_poll(op, NULL, now_ms, &step, &id, &until, &change), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_poll(op, good, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
    CHECK(step == ICR_STEP_SEND);
    CHECK_STATUS(icr_op_request_method(op, NULL, &needed), ICR_STATUS_NULL_ARGUMENT);
    {
        const uint8_t *message = NULL;
        CHECK_STATUS(icr_op_sign_message(op, &message, &needed), ICR_STATUS_WRONG_STATE);
        CHECK(message == NULL);
    }
    CHECK_STATUS(icr_op_handle_failure(op, good, id, 42, S("x"), now_ms), ICR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(icr_op_handle_response(op, good, id, 200, NULL, 3, NULL, 0, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_response(op, good, id, 200, NULL, 0, NULL, 4, now_ms), ICR_STATUS_NULL_ARGUMENT);
    /* Not an HTTP status: reported as a broken answer, and the core tries again. */
    CHECK_STATUS(icr_op_handle_response(op, good, id, 7, NULL, 0, NULL, 0, now_ms), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_abandon(op, good, now_ms), ICR_STATUS_OK);
    icr_op_free(op);
    icr_app_free(good);

    /* The last error: the length it needs, and a cut copy. */
    CHECK_STATUS(icr_op_app_jwt(NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_last_error(NULL, 0, &needed), ICR_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == strlen("out is NULL") + 1);
    CHECK_STATUS(icr_last_error(buf, 4, &needed), ICR_STATUS_BUFFER_TOO_SMALL);
    CHECK(strcmp(buf, "out") == 0);
    CHECK_STATUS(icr_last_error(buf, needed, &needed), ICR_STATUS_OK);
    CHECK(strcmp(buf, "out is NULL") == 0);

    /* Status names. */
    CHECK(strcmp(icr_status_name(ICR_STATUS_OK), "ok") == 0);
    CHECK(strcmp(icr_status_name(ICR_STATUS_NOT_FOUND), "not_found") == 0);
    CHECK(strcmp(icr_status_name(ICR_STATUS_KEY), "key") == 0);
    CHECK(strcmp(icr_status_name(ICR_STATUS_PANIC), "panic") == 0);
    CHECK(strcmp(icr_status_name(9999), "unknown") == 0);
    CHECK(icr_version() != NULL && strlen(icr_version()) >= 5);
}

/* ---- the shared token store (ICR_STEP_STORE) ---- */

/* Whether the `len` bytes at `bytes` contain `text`. */
static int contains(const uint8_t *bytes, size_t len, const char *text) {
    size_t n = strlen(text), i;
    for (i = 0; i + n <= len; i++) {
        if (memcmp(bytes + i, text, n) == 0) {
            return 1;
        }
    }
    return 0;
}

/* An app with the key, sharing the store as the process numbered `seed`. */
static icr_app *shared_app(const uint8_t *key, size_t key_len, uint64_t lease_ttl_ms, uint64_t seed) {
    icr_app *app = new_app(key, key_len);
    CHECK_STATUS(icr_app_attach_store(app, lease_ttl_ms, seed, NULL, 0), ICR_STATUS_OK);
    return app;
}

/* The token `op` made, copied into `out`. */
static void token_of(const icr_op *op, char *out, size_t cap) {
    const char *token = NULL;
    size_t len = 0;
    int64_t expires = 0;
    out[0] = '\0';
    CHECK_STATUS(icr_op_token(op, &token, &len, &expires), ICR_STATUS_OK);
    if (token != NULL && len < cap) {
        memcpy(out, token, len + 1);
    }
}

static void test_shared_store(const uint8_t *key, size_t key_len) {
    registry reg;
    mem_store st;
    /* Two processes of one fleet: two apps, one store. */
    icr_app *first = shared_app(key, key_len, 0, 1), *second = shared_app(key, key_len, 20000, 2);
    icr_op *op = NULL, *other = NULL;
    char minted[64], read[64];
    driven d;
    memset(&reg, 0, sizeof reg);
    memset(&st, 0, sizeof st);

    /* The first mints (nothing stored yet: Get, Lease, Get again under the lease, mint), puts
     * the token and releases its lease in the same step. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, first, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && d.sends == 1 && reg.mints == 1);
    CHECK(st.gets == 2 && st.hits == 0 && st.leases == 1 && st.leases_refused == 0);
    CHECK(st.puts == 1 && st.releases == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    token_of(op, minted, sizeof minted);
    CHECK(strcmp(minted, "crs_0001") == 0);
    icr_op_free(op);
    /* The store holds it sealed: the token's text is nowhere in the stored bytes. */
    {
        int i, seen = 0;
        for (i = 0; i < STORE_SLOTS; i++) {
            if (st.entries[i].used) {
                seen++;
                CHECK(st.entries[i].len > 8);
                CHECK(!contains(st.entries[i].value, st.entries[i].len, "crs_0001"));
            }
        }
        CHECK(seen == 1); /* the entry; the lease was released */
    }

    /* The second is served from the store: no request at all. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, second, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && d.sends == 0 && reg.mints == 1);
    CHECK(st.hits == 1);
    token_of(op, read, sizeof read);
    CHECK(strcmp(read, minted) == 0);
    icr_op_free(op);
    /* And from its own cache afterwards: no store command either. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, second, &reg, 1, &st, 0);
    CHECK(d.sends == 0 && st.gets == 3);
    icr_op_free(op);

    /* A lease held by the other: the first takes it and is minting when the second asks; the
     * second sleeps, then reads what the first put. One mint between them. */
    CHECK_STATUS(icr_op_installation_token(S("i-2"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, first, &reg, 1, &st, STOP(ICR_STEP_SEND));
    CHECK(d.step == ICR_STEP_SEND && st.leases == 2 && st.leases_refused == 0);
    {
        uint64_t mint_id = d.id;
        int64_t woke;
        CHECK_STATUS(icr_op_installation_token(S("i-2"), 0, &other), ICR_STATUS_OK);
        d = drive_until(other, second, &reg, 1, &st, STOP(ICR_STEP_SLEEP) | STOP(ICR_STEP_WAIT) | STOP(ICR_STEP_SEND));
        CHECK(d.step == ICR_STEP_SLEEP && d.until > now_ms);
        CHECK(st.leases == 3 && st.leases_refused == 1 && reg.mints == 1);
        woke = d.until;
        /* The first's mint is answered; it puts the token and releases the lease. */
        answer_send(op, first, &reg, mint_id);
        d = drive_until(op, first, &reg, 1, &st, 0);
        CHECK(d.step == ICR_STEP_DONE && reg.mints == 2 && st.puts == 2 && st.releases == 2);
        token_of(op, minted, sizeof minted);
        CHECK(strcmp(minted, "crs_0002") == 0);
        /* The second wakes and reads it. */
        now_ms = woke;
        d = drive_until(other, second, &reg, 1, &st, 0);
        CHECK(d.step == ICR_STEP_DONE && d.sends == 0 && reg.mints == 2);
        CHECK_STATUS(icr_op_result(other), ICR_STATUS_OK);
        token_of(other, read, sizeof read);
        CHECK(strcmp(read, minted) == 0);
    }
    icr_op_free(other);
    icr_op_free(op);

    /* Revoking a token deletes the shared entry holding it (compare-and-delete). */
    CHECK_STATUS(icr_op_revoke(S("crs_0002"), &op), ICR_STATUS_OK);
    d = drive_until(op, first, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && reg.revokes == 1 && st.deletes == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    icr_op_free(op);
    /* A token the entry does not hold deletes nothing. */
    CHECK_STATUS(icr_op_revoke(S("crs_9999"), &op), ICR_STATUS_OK);
    drive_until(op, first, &reg, 1, &st, 0);
    CHECK(reg.revokes == 2 && st.deletes == 1);
    icr_op_free(op);

    /* A lease whose holder took longer than its lifetime (15 s) lapses: the other takes it
     * and mints; the late holder's put then leaves the other's lease alone (it holds another
     * owner), and the other releases its own. */
    CHECK_STATUS(icr_op_installation_token(S("i-6"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, first, &reg, 1, &st, STOP(ICR_STEP_SEND));
    CHECK(d.step == ICR_STEP_SEND);
    {
        uint64_t late_id = d.id;
        int mints = reg.mints, puts = st.puts, releases = st.releases, refused = st.leases_refused;
        now_ms += 15001;
        CHECK_STATUS(icr_op_installation_token(S("i-6"), 0, &other), ICR_STATUS_OK);
        d = drive_until(other, second, &reg, 1, &st, STOP(ICR_STEP_SEND) | STOP(ICR_STEP_SLEEP));
        CHECK(d.step == ICR_STEP_SEND && st.leases_refused == refused); /* the lapsed lease taken */
        answer_send(op, first, &reg, late_id);
        CHECK(drive_until(op, first, &reg, 1, &st, 0).step == ICR_STEP_DONE);
        CHECK(st.puts == puts + 1 && st.releases == releases); /* the other's lease kept */
        answer_send(other, second, &reg, d.id);
        CHECK(drive_until(other, second, &reg, 1, &st, 0).step == ICR_STEP_DONE);
        CHECK(reg.mints == mints + 2 && st.puts == puts + 2 && st.releases == releases + 1);
    }
    icr_op_free(other);
    icr_op_free(op);

    /* A store that fails: the operation mints alone, with no error. */
    {
        int mints = reg.mints, puts = st.puts;
        st.fail = 1;
        CHECK_STATUS(icr_op_installation_token(S("i-3"), 0, &op), ICR_STATUS_OK);
        d = drive_until(op, second, &reg, 1, &st, 0);
        CHECK(d.step == ICR_STEP_DONE && d.sends == 1 && st.failures == 1 && reg.mints == mints + 1);
        CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
        icr_op_free(op);
        /* Set aside for a while: the next operation does not ask it. */
        CHECK_STATUS(icr_op_installation_token(S("i-4"), 0, &op), ICR_STATUS_OK);
        d = drive_until(op, second, &reg, 1, &st, 0);
        CHECK(d.sends == 1 && st.failures == 1 && reg.mints == mints + 2);
        icr_op_free(op);
        /* Asked again once 5 s have passed, and shared again when it answers. */
        st.fail = 0;
        now_ms += 5000;
        CHECK_STATUS(icr_op_installation_token(S("i-5"), 0, &op), ICR_STATUS_OK);
        d = drive_until(op, second, &reg, 1, &st, 0);
        CHECK(d.sends == 1 && reg.mints == mints + 3 && st.puts == puts + 1);
        icr_op_free(op);
        CHECK_STATUS(icr_op_installation_token(S("i-5"), 0, &op), ICR_STATUS_OK);
        d = drive_until(op, first, &reg, 1, &st, 0);
        CHECK(d.sends == 0 && reg.mints == mints + 3);
        icr_op_free(op);
    }

    icr_app_free(first);
    icr_app_free(second);
}

static void test_shared_store_keyless(const uint8_t *key, size_t key_len) {
    static const uint8_t secret[32] = "0123456789abcdef0123456789abcde";
    static const uint8_t other_secret[32] = "fedcba9876543210fedcba987654321";
    registry reg;
    mem_store st;
    icr_app *one = NULL, *two = NULL, *three = NULL, *keyed = NULL;
    icr_op *op = NULL;
    driven d;
    memset(&reg, 0, sizeof reg);
    memset(&st, 0, sizeof st);

    CHECK_STATUS(icr_app_new_without_key(S("67890"), S("http://registry.test"), &one), ICR_STATUS_OK);
    /* No secret, or a short one: refused, naming the fix. */
    CHECK_STATUS(icr_app_attach_store(one, 0, 1, NULL, 0), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "32 random bytes") != NULL);
    CHECK_STATUS(icr_app_attach_store(one, 0, 1, secret, 16), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "32") != NULL);
    CHECK_STATUS(icr_app_attach_store(one, 0, 1, secret, sizeof secret), ICR_STATUS_OK);
    CHECK_STATUS(icr_app_new_without_key(S("67890"), S("http://registry.test"), &two), ICR_STATUS_OK);
    CHECK_STATUS(icr_app_attach_store(two, 0, 2, secret, sizeof secret), ICR_STATUS_OK);
    CHECK_STATUS(icr_app_new_without_key(S("67890"), S("http://registry.test"), &three), ICR_STATUS_OK);
    CHECK_STATUS(icr_app_attach_store(three, 0, 3, other_secret, sizeof other_secret), ICR_STATUS_OK);
    /* An app with its key takes no secret. */
    keyed = new_app(key, key_len);
    CHECK_STATUS(icr_app_attach_store(keyed, 0, 4, secret, sizeof secret), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "icr_app_new") != NULL);

    /* One mints (its JWT signed outside: a Sign step) and puts ... */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, one, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && d.sends == 1 && reg.mints == 1 && st.puts == 1);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    icr_op_free(op);
    /* ... the app with the same secret reads it ... */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, two, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && d.sends == 0 && reg.mints == 1 && st.hits == 1);
    icr_op_free(op);
    /* ... and one with another secret cannot open it: it mints. */
    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    d = drive_until(op, three, &reg, 1, &st, 0);
    CHECK(d.step == ICR_STEP_DONE && d.sends == 1 && reg.mints == 2);
    CHECK_STATUS(icr_op_result(op), ICR_STATUS_OK);
    icr_op_free(op);

    /* Once used, a keyless app is not remade; an app with its key may attach again. */
    CHECK_STATUS(icr_app_attach_store(one, 0, 5, secret, sizeof secret), ICR_STATUS_WRONG_STATE);
    CHECK(strstr(last_error(), "before the app's first operation") != NULL);
    CHECK_STATUS(icr_op_installation_token(S("i-9"), 0, &op), ICR_STATUS_OK);
    drive_until(op, keyed, &reg, 1, NULL, 0);
    icr_op_free(op);
    CHECK_STATUS(icr_app_attach_store(keyed, 0, 6, NULL, 0), ICR_STATUS_OK);

    icr_app_free(one);
    icr_app_free(two);
    icr_app_free(three);
    icr_app_free(keyed);
}

/* Every new function's NULL, wrong-step and wrong-id paths: nothing written, nothing changed. */
static void test_store_errors(const uint8_t *key, size_t key_len) {
    registry reg;
    icr_app *app = shared_app(key, key_len, 0, 7);
    icr_op *op = NULL;
    enum icr_store_command kind = (enum icr_store_command)0;
    enum icr_step step = ICR_STEP_DONE;
    const char *text = NULL;
    const uint8_t *bytes = NULL;
    size_t len = 0, len2 = 0;
    uint64_t id = 0, change = 0, ttl = 0;
    int64_t until = 0;
    memset(&reg, 0, sizeof reg);

    CHECK_STATUS(icr_app_attach_store(NULL, 0, 1, NULL, 0), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_app_attach_store(app, 0, 1, NULL, 5), ICR_STATUS_NULL_ARGUMENT);

    CHECK_STATUS(icr_op_installation_token(S("i-1"), 0, &op), ICR_STATUS_OK);
    /* Before any Store step: the accessors and replies are out of turn. */
    CHECK_STATUS(icr_op_store_command(op, &kind, &text, &len), ICR_STATUS_WRONG_STATE);
    CHECK(strstr(last_error(), "not a Store") != NULL);
    CHECK_STATUS(icr_op_store_value(op, &bytes, &len), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_store_ttl_ms(op, &ttl), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_store_lease(op, &text, &len, &bytes, &len2), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_handle_store_done(op, app, 1, now_ms), ICR_STATUS_WRONG_STATE);
    CHECK(strstr(last_error(), "no Store step is pending") != NULL);
    CHECK(kind == (enum icr_store_command)0 && text == NULL && bytes == NULL && len == 0 && ttl == 0);

    CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
    CHECK(step == ICR_STEP_STORE && id != 0);
    /* NULL handles and out-parameters. */
    CHECK_STATUS(icr_op_store_command(NULL, &kind, &text, &len), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_command(op, NULL, &text, &len), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_command(op, &kind, NULL, &len), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_command(op, &kind, &text, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_value(NULL, &bytes, &len), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_value(op, NULL, &len), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_value(op, &bytes, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_ttl_ms(NULL, &ttl), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_ttl_ms(op, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_lease(NULL, &text, &len, &bytes, &len2), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_lease(op, NULL, &len, &bytes, &len2), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_lease(op, &text, NULL, &bytes, &len2), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_lease(op, &text, &len, NULL, &len2), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_store_lease(op, &text, &len, &bytes, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_value(NULL, app, id, 0, NULL, 0, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_value(op, NULL, id, 0, NULL, 0, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_value(op, app, id, 1, NULL, 3, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_leased(NULL, app, id, 1, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_leased(op, NULL, id, 1, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_done(NULL, app, id, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_done(op, NULL, id, now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_failure(NULL, app, id, S("down"), now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_failure(op, NULL, id, S("down"), now_ms), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_handle_store_failure(op, app, id, NULL, 4, now_ms), ICR_STATUS_NULL_ARGUMENT);
    /* Another id than the pending step's: an unknown request, for every reply. */
    CHECK_STATUS(icr_op_handle_store_value(op, app, id + 1, 0, NULL, 0, now_ms), ICR_STATUS_UNKNOWN_REQUEST);
    CHECK_STATUS(icr_op_handle_store_leased(op, app, id + 1, 1, now_ms), ICR_STATUS_UNKNOWN_REQUEST);
    CHECK_STATUS(icr_op_handle_store_done(op, app, id + 1, now_ms), ICR_STATUS_UNKNOWN_REQUEST);
    CHECK_STATUS(icr_op_handle_store_failure(op, app, id + 1, S("down"), now_ms), ICR_STATUS_UNKNOWN_REQUEST);
    CHECK(strstr(last_error(), "not the pending Store step's id") != NULL);
    /* The step is still there after all that: a Get, whose key reads. */
    CHECK_STATUS(icr_op_store_command(op, &kind, &text, &len), ICR_STATUS_OK);
    CHECK(kind == ICR_STORE_COMMAND_GET && strstr(text, "{installation:i-1}") != NULL && text[len] == '\0');
    /* Polling again gives the command up: the operation mints without the store, and the late
     * answer is refused. */
    CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &ttl, &until, &change), ICR_STATUS_OK);
    CHECK(step == ICR_STEP_SEND);
    CHECK_STATUS(icr_op_handle_store_value(op, app, id, 0, NULL, 0, now_ms), ICR_STATUS_WRONG_STATE);
    CHECK_STATUS(icr_op_abandon(op, app, now_ms), ICR_STATUS_OK);
    icr_op_free(op);
    icr_app_free(app);
}

/* The core's transport policy on a Send step's request (icr_op_request_route), and its
 * defaults (icr_transport_defaults). */
static void route_of(const uint8_t *key, size_t key_len, const char *base_url, uint32_t allow, enum icr_status expect,
                     enum icr_route expect_route) {
    icr_app *app = NULL;
    icr_op *op = NULL;
    enum icr_step step;
    enum icr_route route = (enum icr_route)0;
    uint64_t id, change;
    int64_t until;
    CHECK_STATUS(icr_app_new(S("67890"), key, key_len, base_url, strlen(base_url), &app), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_installation_token(S("inst-1"), 0, &op), ICR_STATUS_OK);
    CHECK_STATUS(icr_op_request_route(op, 0, &route), ICR_STATUS_WRONG_STATE); /* not a Send yet */
    CHECK_STATUS(icr_op_poll(op, app, now_ms, &step, &id, &until, &change), ICR_STATUS_OK);
    CHECK(step == ICR_STEP_SEND);
    CHECK_STATUS(icr_op_request_route(op, allow, &route), expect);
    if (expect == ICR_STATUS_OK) {
        CHECK(route == expect_route);
    } else {
        /* The bare reason, to hand back with ICR_TRANSPORT_KIND_REFUSED; no credential in it. */
        CHECK(strncmp(last_error(), "refusing to send credentials over plain http://", 47) == 0);
        CHECK(strstr(last_error(), "eyJ") == NULL);
        CHECK(route == (enum icr_route)0);
    }
    CHECK_STATUS(icr_op_request_route(op, allow, NULL), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_request_route(NULL, allow, &route), ICR_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(icr_op_abandon(op, app, now_ms), ICR_STATUS_OK);
    icr_op_free(op);
    icr_app_free(app);
}

static void test_transport_policy(const uint8_t *key, size_t key_len) {
    uint64_t timeout_ms = 0, connect_ms = 0, max_body = 0;
    route_of(key, key_len, "http://127.0.0.1:8080", 0, ICR_STATUS_OK, ICR_ROUTE_DIRECT);
    route_of(key, key_len, "https://registry.test", 0, ICR_STATUS_OK, ICR_ROUTE_PROXY_ALLOWED);
    route_of(key, key_len, "http://192.0.2.1", 0, ICR_STATUS_TRANSPORT, ICR_ROUTE_DIRECT);
    route_of(key, key_len, "http://192.0.2.1", 1, ICR_STATUS_OK, ICR_ROUTE_PROXY_ALLOWED);
    CHECK_STATUS(icr_transport_defaults(&timeout_ms, &connect_ms, &max_body), ICR_STATUS_OK);
    CHECK(timeout_ms == 30000 && connect_ms == 10000 && max_body == 8u * 1024 * 1024);
    CHECK_STATUS(icr_transport_defaults(NULL, &connect_ms, &max_body), ICR_STATUS_NULL_ARGUMENT);
}

int main(int argc, char **argv) {
    uint8_t *key;
    size_t key_len = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH_TO_RSA_PEM_KEY\n", argv[0]);
        return 2;
    }
    key = read_file(argv[1], &key_len);
    if (key == NULL) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    test_installation_token(key, key_len);
    test_not_found(key, key_len);
    test_transport_failure_then_token(key, key_len);
    test_clock_skew(key, key_len);
    test_retry_after(key, key_len);
    test_other_operations(key, key_len);
    test_keyless_app();
    test_errors(key, key_len);
    test_shared_store(key, key_len);
    test_shared_store_keyless(key, key_len);
    test_store_errors(key, key_len);
    test_transport_policy(key, key_len);
    memset(key, 0, key_len);
    free(key);
    printf("sans_io: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
