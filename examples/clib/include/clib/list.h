/* clib/list.h: a growable array of (key, value) pairs that can be sorted. */
#ifndef CLIB_LIST_H
#define CLIB_LIST_H

#include <stddef.h>

typedef struct {
    const char *key;        /* not owned: the caller keeps it alive */
    long value;
} list_item;

typedef struct {
    list_item *items;
    size_t len;
    size_t cap;
} list;

void list_init(list *items);
void list_free(list *items);
int list_push(list *items, const char *key, long value);   /* 0, or -1 out of memory */

/* Largest value first; equal values by key, in byte order. */
void list_sort(list *items);
void list_reverse(list *items);
long list_sum(const list *items);

#endif
