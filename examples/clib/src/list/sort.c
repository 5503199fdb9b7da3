/* Sorting with qsort: largest value first, ties by key so the order is stable. */
#include <stdlib.h>
#include <string.h>

#include "clib/list.h"

static int by_value_then_key(const void *left, const void *right)
{
    const list_item *a = left, *b = right;
    if (a->value != b->value)
        return a->value > b->value ? -1 : 1;
    return strcmp(a->key, b->key);
}

void list_sort(list *items)
{
    if (items->len > 1)
        qsort(items->items, items->len, sizeof *items->items, by_value_then_key);
}
