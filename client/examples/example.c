/*
 * example.c -- libpeercache in one screen: connect, set with a TTL, get,
 * print, delete, free. Usage: peercache-example [HOST:PORT[,...]]
 */
#include <stdio.h>

#include "pc_client.h"

int main(int argc, char **argv)
{
    pc_client_options_t opt = {.nodes = argc > 1 ? argv[1] : "127.0.0.1:7400",
                               .timeout_ms = 1000};
    pc_set_options_t set = {.ttl_ms = 60000}; /* expires in a minute */
    pc_client_t *c = NULL;
    pc_value_t v;
    uint64_t version;
    int rc;

    /* Parses the node list only; the first call connects. */
    if ((rc = pc_client_new(&opt, &c)) != 0) {
        fprintf(stderr, "bad node list: %s\n", pc_strerror(rc));
        return 1;
    }
    rc = pc_client_set(c, "greeting", 8, "hello", 5, &set, &version);
    if (rc == 0)
        rc = pc_client_get(c, "greeting", 8, &v); /* v is ours to free */
    if (rc == 0) {
        printf("greeting = %s (version %llu, %lld ms to live)\n", (const char *)v.data,
               (unsigned long long)v.version, (long long)v.ttl_ms);
        pc_value_free(&v);
        rc = pc_client_del(c, "greeting", 8);
    }
    if (rc != 0) /* the server's own words, when it sent any */
        fprintf(stderr, "error: %s: %s\n", pc_strerror(rc), pc_client_errmsg(c));
    pc_client_free(&c);
    return rc == 0 ? 0 : 1;
}
