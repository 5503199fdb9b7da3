/* Reversing in place. */
#include "clib/list.h"

void list_reverse(list *items)
{
    for (size_t i = 0, j = items->len; i + 1 < j; i++, j--) {
        list_item swap = items->items[i];
        items->items[i] = items->items[j - 1];
        items->items[j - 1] = swap;
    }
}
