/* The blocking client: a token, then a request as the installation. Settings as `icr-app mock`
 * prints them: ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY (a key file), ICR_INSTALLATION_ID. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "icr_app.h"
static int fail(const char *what) {
    char message[1024];
    size_t needed;
    icr_last_error(message, sizeof message, &needed);
    return fprintf(stderr, "error: %s: %s\n", what, message), 1;
}

int main(void) {
    const char *base = getenv("ICR_BASE_URL"), *app_id = getenv("ICR_APP_ID"), *path = getenv("ICR_PRIVATE_KEY"),
               *id = getenv("ICR_INSTALLATION_ID"), *projects = "/projects?limit=10&page=0";
    unsigned char key[16384];
    FILE *f = (base && app_id && path && id) ? fopen(path, "rb") : NULL;
    size_t key_len = f ? fread(key, 1, sizeof key, f) : 0, len;
    char token[256]; /* a secret: never log it */
    int64_t expires_at_ms = 0;
    uint16_t status = 0;
    icr_app *app = NULL; icr_response *response = NULL;
    icr_client *client = NULL; /* thread-safe: share it between threads */
    if (f == NULL) return fprintf(stderr, "error: set ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY, ICR_INSTALLATION_ID\n"), 1;
    fclose(f);
    if (icr_app_new(app_id, strlen(app_id), key, key_len, base, strlen(base), &app)) return fail("app");
    memset(key, 0, sizeof key);
    if (icr_client_new(app, NULL, &client)) return fail("client"); /* NULL: the default options */
    icr_app_free(app);
    if (icr_client_installation_token(client, id, strlen(id), 60000, token, sizeof token, &len, &expires_at_ms)) return fail("token");
    printf("a token of %zu characters, valid until %lld (Unix ms)\n", len, (long long)expires_at_ms);
    if (icr_client_request(client, ICR_SCOPE_INSTALLATION, id, strlen(id), "GET", 3, projects, strlen(projects), NULL, 0, NULL, 0, &response)) return fail("request");
    icr_response_status(response, &status);
    printf("GET %s: %u\n", projects, (unsigned)status);
    icr_response_free(response);
    icr_client_free(client);
    return status == 200 ? 0 : 1;
}
