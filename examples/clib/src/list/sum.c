/* The total of the values. */
#include "clib/list.h"

long list_sum(const list *items)
{
    long total = 0;
    for (size_t i = 0; i < items->len; i++)
        total += items->items[i].value;
    return total;
}
