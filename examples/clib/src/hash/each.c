/* Visiting every entry, in bucket order (callers sort if they care). */
#include "clib/hash.h"

void hash_each(const hash_table *table, hash_visit visit, void *context)
{
    for (size_t i = 0; i < table->nbuckets; i++)
        for (const hash_entry *entry = table->buckets[i]; entry != NULL; entry = entry->next)
            visit(entry->key, entry->value, context);
}
