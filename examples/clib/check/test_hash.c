/* Tests of libhash: counting, growing, visiting. */
#include <stdio.h>

#include "check.h"
#include "clib/hash.h"

static void add_up(const char *key, long value, void *context)
{
    (void)key;
    *(long *)context += value;
}

void test_hash(void)
{
    CHECK(hash_fnv1a("") == 2166136261u);
    CHECK(hash_fnv1a("a") == 0xe40c292cu);

    hash_table table;
    CHECK(hash_init(&table, 2) == 0);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i % 250);
        long *slot = hash_slot(&table, key);
        CHECK(slot != NULL);
        if (slot != NULL)
            ++*slot;
    }
    CHECK(table.count == 250 && table.nbuckets > 2);
    CHECK(hash_get(&table, "k7", -1) == 4);
    CHECK(hash_get(&table, "absent", -1) == -1);
    long total = 0;
    hash_each(&table, add_up, &total);
    CHECK(total == 1000);
    hash_free(&table);
}
