/* A growable array of pairs. */
#include <stdlib.h>

#include "clib/list.h"

void list_init(list *items)
{
    items->items = NULL;
    items->len = 0;
    items->cap = 0;
}

void list_free(list *items)
{
    free(items->items);
    list_init(items);
}

int list_push(list *items, const char *key, long value)
{
    if (items->len == items->cap) {
        size_t cap = items->cap ? items->cap * 2 : 8;
        list_item *grown = realloc(items->items, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        items->items = grown;
        items->cap = cap;
    }
    items->items[items->len].key = key;
    items->items[items->len].value = value;
    items->len++;
    return 0;
}
