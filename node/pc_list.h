/*
 * pc_list.h -- intrusive circular doubly linked list.
 *
 * Embed a pc_list_t in a struct, recover the struct with pc_list_entry().
 * An empty list's head points at itself. Header-only, no allocation.
 */
#ifndef PC_LIST_H
#define PC_LIST_H

#include <stddef.h>

typedef struct pc_list {
    struct pc_list *prev, *next;
} pc_list_t;

#define pc_list_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void pc_list_init(pc_list_t *h) { h->prev = h->next = h; }
static inline int pc_list_empty(const pc_list_t *h) { return h->next == h; }

static inline void pc_list_push_back(pc_list_t *h, pc_list_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void pc_list_remove(pc_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
