/* Tests of liblist. */
#include <string.h>

#include "check.h"
#include "clib/list.h"

void test_list(void)
{
    list items;
    list_init(&items);
    CHECK(list_push(&items, "pear", 2) == 0);
    CHECK(list_push(&items, "fig", 5) == 0);
    CHECK(list_push(&items, "apple", 2) == 0);
    list_sort(&items);
    CHECK(strcmp(items.items[0].key, "fig") == 0);
    CHECK(strcmp(items.items[1].key, "apple") == 0);
    CHECK(strcmp(items.items[2].key, "pear") == 0);
    list_reverse(&items);
    CHECK(strcmp(items.items[0].key, "pear") == 0);
    CHECK(list_sum(&items) == 9);
    list_free(&items);
    CHECK(items.len == 0);
}
