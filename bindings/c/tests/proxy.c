/*
 * The blocking client of libicr_app through a real CONNECT proxy to an HTTPS registry (issue
 * 27), from C99: the network `icr-app-testnet` (testkit) runs as a process: the fake registry
 * behind TLS for `registry.test` (a certificate from a CA made when it started), which only its
 * proxy resolves, and the proxy, which writes each request line it receives and the bytes each
 * client sends into a tunnel to files before answering or passing them on. Run by
 * bindings/c/run-tests.sh under ASan/UBSan and under Valgrind, with the JSON line each of two
 * testnets printed, saved to a file: one with an open proxy, one whose proxy requires
 * credentials.
 *
 * Checked: tokens minted and requests sent through the proxy, set explicitly
 * (icr_client_options_set_proxy, _set_ca_file) and from the environment (HTTPS_PROXY,
 * https_proxy, ALL_PROXY with SSL_CERT_FILE), the proxy seeing only `CONNECT
 * registry.test:443 HTTP/1.1` and TLS records carrying neither the token nor any clear HTTP;
 * without the CA the registry is not trusted; NO_PROXY matching the registry sends the client
 * direct (registry.test resolves nowhere else: a transport error naming it, nothing reaches
 * the proxy); a proxy requiring credentials: the right ones work, wrong or missing ones are an
 * error naming the proxy without them; a proxy that is not there is named; a plain http
 * registry behind a proxy is refused; a loopback registry bypasses an environment proxy.
 *
 * usage: proxy OPEN_TESTNET.json AUTH_TESTNET.json
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icr_app.h"
#include "check.h"

/* The registry's only request line the proxy may see. */
static const char CONNECT_LINE[] = "CONNECT registry.test:443 HTTP/1.1";
/* The variables a client reads for its proxy and CA, cleared between cases. */
static const char *const NETWORK_VARIABLES[] = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                                "all_proxy",   "NO_PROXY",    "no_proxy",   "SSL_CERT_FILE"};

/* A whole file, NUL-terminated (NULL when it cannot be read). */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;
    *len = 0;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)size + 1);
    if (buf != NULL) {
        *len = fread(buf, 1, (size_t)size, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* `needle` in the `len` bytes at `hay`, ignoring ASCII case. */
static int contains_nocase(const char *hay, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++) {
        size_t j = 0;
        while (j < n) {
            char a = hay[i + j], b = needle[j];
            if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
            if (a != b) break;
            j++;
        }
        if (j == n) return 1;
    }
    return 0;
}

/* One testnet, from the JSON line it printed. */
struct net {
    char base_url[64], app_id[64], key_file[512], ca_file[512], installation[64], organization[64];
    char registry_url[64], proxy_url[64], proxy_with_credentials[256], requests[512], tunnels[512];
    uint8_t *key;
    size_t key_len;
};

/* The string value of `"name":"..."` in the JSON line (the testnet writes no escapes in
 * these values); "" for null. */
static int json_string(const char *json, const char *name, char *out, size_t cap) {
    char pattern[64];
    const char *at, *end;
    snprintf(pattern, sizeof pattern, "\"%s\":", name);
    at = strstr(json, pattern);
    if (at == NULL) return 0;
    at += strlen(pattern);
    if (strncmp(at, "null", 4) == 0) {
        out[0] = '\0';
        return 1;
    }
    if (*at != '"') return 0;
    at++;
    end = strchr(at, '"');
    if (end == NULL || (size_t)(end - at) >= cap || memchr(at, '\\', (size_t)(end - at)) != NULL) return 0;
    memcpy(out, at, (size_t)(end - at));
    out[end - at] = '\0';
    return 1;
}

static int load_net(const char *path, struct net *net) {
    size_t len;
    char *json = read_file(path, &len);
    int ok;
    memset(net, 0, sizeof *net);
    if (json == NULL) return 0;
    ok = json_string(json, "base_url", net->base_url, sizeof net->base_url) &&
         json_string(json, "app_id", net->app_id, sizeof net->app_id) &&
         json_string(json, "private_key_file", net->key_file, sizeof net->key_file) &&
         json_string(json, "ca_file", net->ca_file, sizeof net->ca_file) &&
         json_string(json, "installation_id", net->installation, sizeof net->installation) &&
         json_string(json, "organization_id", net->organization, sizeof net->organization) &&
         json_string(json, "registry_url", net->registry_url, sizeof net->registry_url) &&
         json_string(json, "proxy_url", net->proxy_url, sizeof net->proxy_url) &&
         json_string(json, "proxy_url_with_credentials", net->proxy_with_credentials,
                     sizeof net->proxy_with_credentials) &&
         json_string(json, "proxy_requests", net->requests, sizeof net->requests) &&
         json_string(json, "proxy_tunnels", net->tunnels, sizeof net->tunnels);
    free(json);
    if (!ok) return 0;
    net->key = (uint8_t *)read_file(net->key_file, &net->key_len);
    return net->key != NULL;
}

static void free_net(struct net *net) {
    memset(net->key, 0, net->key_len);
    free(net->key);
}

static void clear_environment(void) {
    for (size_t i = 0; i < sizeof NETWORK_VARIABLES / sizeof NETWORK_VARIABLES[0]; i++) unsetenv(NETWORK_VARIABLES[i]);
}

/* How many bytes the proxy's request log holds: where the next case's lines start. */
static size_t mark(const struct net *net) {
    size_t len;
    char *log = read_file(net->requests, &len);
    free(log);
    return len;
}

/* The request lines the proxy received since `since` (a `mark`): how many, and whether each
 * was `CONNECT registry.test:443 HTTP/1.1`. */
static int connects_since(const struct net *net, size_t since, int *others) {
    size_t len;
    char *log = read_file(net->requests, &len);
    int lines = 0;
    *others = 0;
    if (log == NULL) return 0;
    for (char *line = log + since, *end; since < len && *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        if (end == NULL) break;
        *end = '\0';
        lines++;
        if (strcmp(line, CONNECT_LINE) != 0) {
            (*others)++;
            fprintf(stderr, "the proxy received: %s\n", line);
        }
    }
    free(log);
    return lines;
}

/* The proxy saw at least one request line since `since`, each a CONNECT to the registry. */
static void check_only_tunnels_since(const struct net *net, size_t since) {
    int others = 0;
    CHECK(connects_since(net, since, &others) >= 1);
    CHECK(others == 0);
}

/* The proxy saw nothing since `since`. */
static void check_nothing_since(const struct net *net, size_t since) {
    CHECK(mark(net) == since);
}

/* Every tunnel the proxy opened carried a TLS handshake first and no clear HTTP, no token,
 * nor any of `secrets` (NULL-terminated). */
static void check_tunnels_encrypted(const struct net *net, const char *const *secrets) {
    int tunnels = 0;
    for (int n = 0;; n++) {
        char path[600];
        size_t len;
        char *bytes;
        snprintf(path, sizeof path, "%s/tunnel-%d.bin", net->tunnels, n);
        bytes = read_file(path, &len);
        if (bytes == NULL) break;
        tunnels++;
        CHECK(len == 0 || (unsigned char)bytes[0] == 0x16); /* a TLS handshake record */
        CHECK(!contains_nocase(bytes, len, "authorization") && !contains_nocase(bytes, len, "bearer"));
        CHECK(!contains_nocase(bytes, len, "/app/") && !contains_nocase(bytes, len, "/projects"));
        CHECK(!contains_nocase(bytes, len, "crs_"));
        for (const char *const *s = secrets; s != NULL && *s != NULL; s++) CHECK(!contains_nocase(bytes, len, *s));
        free(bytes);
    }
    CHECK(tunnels >= 1);
}

static icr_app *app_at(const struct net *net, const char *base_url) {
    icr_app *app = NULL;
    CHECK_STATUS(icr_app_new(T(net->app_id), net->key, net->key_len, T(base_url), &app), ICR_STATUS_OK);
    return app;
}

/* A token call's results. */
struct token {
    char text[256];
    size_t len;
    int64_t expires_at_ms;
};

/* The installation's token, and GET /projects and GET /organizations/{id} as the installation:
 * the status of each; the token in `t`. */
static void mint_and_send(icr_client *client, const struct net *net, struct token *t) {
    icr_response *response = NULL;
    uint16_t status = 0;
    char path[128];
    memset(t, 0, sizeof *t);
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t->text, sizeof t->text, &t->len,
                                               &t->expires_at_ms),
                 ICR_STATUS_OK);
    CHECK(strncmp(t->text, "crs_", 4) == 0);
    CHECK_STATUS(icr_client_request(client, ICR_SCOPE_INSTALLATION, T(net->installation), S("GET"), S("/projects"),
                                    NULL, 0, NULL, 0, &response),
                 ICR_STATUS_OK);
    CHECK_STATUS(icr_response_status(response, &status), ICR_STATUS_OK);
    CHECK(status == 200);
    icr_response_free(response);
    snprintf(path, sizeof path, "/organizations/%s", net->organization);
    response = NULL;
    CHECK_STATUS(icr_client_request(client, ICR_SCOPE_ORGANIZATION, T(net->organization), S("GET"), T(path), NULL, 0,
                                    NULL, 0, &response),
                 ICR_STATUS_OK);
    CHECK_STATUS(icr_response_status(response, &status), ICR_STATUS_OK);
    CHECK(status == 200);
    icr_response_free(response);
}

/* What the log sink received: how many records, and how many quoted `secret`. */
struct log {
    pthread_mutex_t lock;
    int records, leaks;
    const char *secret;
};

static void on_log(void *user_data, uint32_t level, const char *message, size_t message_len) {
    struct log *log = user_data;
    (void)level;
    pthread_mutex_lock(&log->lock);
    log->records++;
    if (contains_nocase(message, message_len, log->secret) || contains_nocase(message, message_len, "crs_")) log->leaks++;
    pthread_mutex_unlock(&log->lock);
}

/* The proxy and the CA set on the options: minted and sent through the tunnel. Without the CA,
 * the registry's certificate is refused. */
static void test_explicit_proxy(const struct net *net) {
    icr_app *app = app_at(net, net->base_url);
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;
    size_t since = mark(net);

    icr_client_options_new(&options);
    CHECK_STATUS(icr_client_options_set_proxy(options, T(net->proxy_url)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_options_set_ca_file(options, T(net->ca_file)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    mint_and_send(client, net, &t);
    icr_client_free(client);
    check_only_tunnels_since(net, since);
    {
        const char *secrets[] = {t.text, NULL};
        check_tunnels_encrypted(net, secrets);
    }
    icr_client_options_free(options);

    /* The same without the CA: the registry's certificate is not trusted. */
    icr_client_options_new(&options);
    icr_client_options_set_proxy(options, T(net->proxy_url));
    icr_client_options_set_retries(options, 0);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(contains_nocase(last_error(), strlen(last_error()), "certificate"));
    CHECK(strstr(last_error(), "SSL_CERT_FILE") != NULL); /* the fix */
    icr_client_free(client);
    icr_client_options_free(options);
    icr_app_free(app);
}

/* The proxy from the environment (each variable a client reads for https, set before
 * icr_client_new), the CA from SSL_CERT_FILE. */
static void test_environment_proxy(const struct net *net) {
    static const char *const variables[] = {"HTTPS_PROXY", "https_proxy", "ALL_PROXY"};
    icr_app *app = app_at(net, net->base_url);
    for (size_t i = 0; i < sizeof variables / sizeof variables[0]; i++) {
        icr_client *client = NULL;
        struct token t;
        size_t since = mark(net);
        clear_environment();
        setenv(variables[i], net->proxy_url, 1);
        setenv("SSL_CERT_FILE", net->ca_file, 1);
        CHECK_STATUS(icr_client_new(app, NULL, &client), ICR_STATUS_OK);
        clear_environment(); /* read by icr_client_new: no longer needed */
        mint_and_send(client, net, &t);
        icr_client_free(client);
        check_only_tunnels_since(net, since);
        {
            const char *secrets[] = {t.text, NULL};
            check_tunnels_encrypted(net, secrets);
        }
    }
    icr_app_free(app);
}

/* NO_PROXY naming the registry: the client goes direct, where registry.test does not resolve
 * (a transport error naming it), and the proxy sees nothing. One naming another host or port
 * leaves the proxy in use. */
static void test_no_proxy(const struct net *net) {
    static const char *const matching[] = {"registry.test", ".test", "*", "registry.test:443"};
    icr_app *app = app_at(net, net->base_url);
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;
    size_t since;

    icr_client_options_new(&options);
    icr_client_options_set_retries(options, 0);
    for (size_t i = 0; i < sizeof matching / sizeof matching[0]; i++) {
        since = mark(net);
        clear_environment();
        setenv("HTTPS_PROXY", net->proxy_url, 1);
        setenv("NO_PROXY", matching[i], 1);
        setenv("SSL_CERT_FILE", net->ca_file, 1);
        CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
        clear_environment();
        CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                                   &t.expires_at_ms),
                     ICR_STATUS_TRANSPORT);
        CHECK(strstr(last_error(), "registry.test") != NULL);
        icr_client_free(client);
        check_nothing_since(net, since);
    }

    /* The explicit proxy too: NO_PROXY of the environment applies to it. */
    since = mark(net);
    setenv("no_proxy", "registry.test", 1);
    icr_client_options_set_proxy(options, T(net->proxy_url));
    icr_client_options_set_ca_file(options, T(net->ca_file));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    clear_environment();
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), "registry.test") != NULL);
    icr_client_free(client);
    check_nothing_since(net, since);
    icr_client_options_free(options);

    /* Another port or another host: still through the proxy. */
    since = mark(net);
    setenv("HTTPS_PROXY", net->proxy_url, 1);
    setenv("NO_PROXY", "registry.test:8443,other.test", 1);
    setenv("SSL_CERT_FILE", net->ca_file, 1);
    CHECK_STATUS(icr_client_new(app, NULL, &client), ICR_STATUS_OK);
    clear_environment();
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_OK);
    icr_client_free(client);
    check_only_tunnels_since(net, since);
    icr_app_free(app);
}

/* A proxy requiring credentials: the right ones (explicit or from the environment) work and
 * never cross the tunnel; wrong or missing ones are a transport error naming the proxy
 * (`http://127.0.0.1:port`) and its credentials, never quoting them, nor does the log. */
static void test_proxy_credentials(const struct net *net) {
    icr_app *app = app_at(net, net->base_url);
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;
    struct log log;
    char user[64], password[64], wrong[256];
    const char *at = strchr(net->proxy_with_credentials, '@');
    const char *colon = strchr(net->proxy_with_credentials + strlen("http://"), ':');
    size_t since = mark(net);

    CHECK(at != NULL && colon != NULL && colon < at);
    if (at == NULL || colon == NULL || colon > at) return;
    snprintf(user, sizeof user, "%.*s", (int)(colon - net->proxy_with_credentials - strlen("http://")),
             net->proxy_with_credentials + strlen("http://"));
    snprintf(password, sizeof password, "%.*s", (int)(at - colon - 1), colon + 1);
    snprintf(wrong, sizeof wrong, "http://%s:Wr0ng-Secret@%s", user, net->proxy_url + strlen("http://"));
    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.lock, NULL);
    log.secret = password;

    icr_client_options_new(&options);
    icr_client_options_set_ca_file(options, T(net->ca_file));
    icr_client_options_set_log_sink(options, on_log, &log);
    icr_client_options_set_retries(options, 0);
    CHECK_STATUS(icr_client_options_set_proxy(options, T(net->proxy_with_credentials)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    mint_and_send(client, net, &t);
    icr_client_free(client);

    /* From the environment. */
    setenv("HTTPS_PROXY", net->proxy_with_credentials, 1);
    setenv("SSL_CERT_FILE", net->ca_file, 1);
    CHECK_STATUS(icr_client_new(app, NULL, &client), ICR_STATUS_OK);
    clear_environment();
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_OK);
    icr_client_free(client);
    check_only_tunnels_since(net, since);
    {
        const char *secrets[] = {t.text, password, user, NULL};
        check_tunnels_encrypted(net, secrets);
    }

    /* Wrong ones, then none: named, never quoted. */
    log.secret = "Wr0ng-Secret";
    CHECK_STATUS(icr_client_options_set_proxy(options, T(wrong)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), net->proxy_url) != NULL && strstr(last_error(), "credentials") != NULL);
    CHECK(strstr(last_error(), "Wr0ng-Secret") == NULL && strstr(last_error(), user) == NULL);
    icr_client_free(client);
    CHECK_STATUS(icr_client_options_set_proxy(options, T(net->proxy_url)), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), net->proxy_url) != NULL && strstr(last_error(), "credentials") != NULL);
    icr_client_free(client);
    CHECK(log.records > 0 && log.leaks == 0);

    icr_client_options_free(options);
    icr_app_free(app);
    pthread_mutex_destroy(&log.lock);
}

/* A proxy where nothing listens: a transport error naming it without its credentials. */
static void test_proxy_not_there(const struct net *net) {
    icr_app *app = app_at(net, net->base_url);
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    struct token t;
    icr_client_options_new(&options);
    icr_client_options_set_retries(options, 0);
    icr_client_options_set_proxy(options, S("http://someone:Gone-Secret@127.0.0.1:1"));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_OK);
    CHECK_STATUS(icr_client_installation_token(client, T(net->installation), 0, t.text, sizeof t.text, &t.len,
                                               &t.expires_at_ms),
                 ICR_STATUS_TRANSPORT);
    CHECK(strstr(last_error(), "http://127.0.0.1:1") != NULL);
    CHECK(strstr(last_error(), "Gone-Secret") == NULL && strstr(last_error(), "someone") == NULL);
    icr_client_free(client);
    icr_client_options_free(options);
    icr_app_free(app);
}

/* A plain http:// registry behind a proxy (from the environment, or set with credentials) is
 * refused by icr_client_new: credentials would cross the proxy in clear. */
static void test_http_behind_proxy(const struct net *net, const struct net *auth) {
    icr_app *app = app_at(net, "http://registry.test");
    icr_client_options *options = NULL;
    icr_client *client = NULL;
    size_t since = mark(net);

    setenv("HTTPS_PROXY", net->proxy_url, 1);
    setenv("HTTP_PROXY", net->proxy_url, 1);
    CHECK_STATUS(icr_client_new(app, NULL, &client), ICR_STATUS_CONFIG);
    clear_environment();
    CHECK(strstr(last_error(), "in clear") != NULL && strstr(last_error(), net->proxy_url) != NULL);
    CHECK(client == NULL);

    icr_client_options_new(&options);
    icr_client_options_set_proxy(options, T(auth->proxy_with_credentials));
    CHECK_STATUS(icr_client_new(app, options, &client), ICR_STATUS_CONFIG);
    CHECK(strstr(last_error(), "in clear") != NULL && strstr(last_error(), auth->proxy_url) != NULL);
    CHECK(strstr(last_error(), "@") == NULL);
    CHECK(client == NULL);
    icr_client_options_free(options);
    check_nothing_since(net, since);
    icr_app_free(app);
}

/* A loopback registry is reached directly, whatever proxy the environment names. */
static void test_loopback_bypass(const struct net *net) {
    icr_app *app = app_at(net, net->registry_url);
    icr_client *client = NULL;
    struct token t;
    size_t since = mark(net);
    setenv("HTTPS_PROXY", net->proxy_url, 1);
    setenv("HTTP_PROXY", net->proxy_url, 1);
    setenv("ALL_PROXY", net->proxy_url, 1);
    CHECK_STATUS(icr_client_new(app, NULL, &client), ICR_STATUS_OK);
    clear_environment();
    mint_and_send(client, net, &t);
    icr_client_free(client);
    check_nothing_since(net, since);
    icr_app_free(app);
}

int main(int argc, char **argv) {
    struct net open, auth;
    if (argc != 3) {
        fprintf(stderr, "usage: proxy OPEN_TESTNET.json AUTH_TESTNET.json (each the line icr-app-testnet printed; "
                        "the second's proxy started with --proxy-user and --proxy-password)\n");
        return 2;
    }
    if (!load_net(argv[1], &open) || !load_net(argv[2], &auth) || auth.proxy_with_credentials[0] == '\0') {
        fprintf(stderr, "proxy: cannot read the testnets' JSON (%s, %s) or their demo keys\n", argv[1], argv[2]);
        return 2;
    }
    clear_environment();
    test_explicit_proxy(&open);
    test_environment_proxy(&open);
    test_no_proxy(&open);
    test_proxy_credentials(&auth);
    test_proxy_not_there(&open);
    test_http_behind_proxy(&open, &auth);
    test_loopback_bypass(&open);
    free_net(&open);
    free_net(&auth);
    printf("proxy: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
