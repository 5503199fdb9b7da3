/* Rehashing into more buckets moves the entries; no key is copied again. */
#include <stdlib.h>

#include "clib/hash.h"

int hash_resize(hash_table *table, size_t nbuckets)
{
    if (nbuckets <= table->nbuckets)
        return 0;
    hash_entry **buckets = calloc(nbuckets, sizeof *buckets);
    if (buckets == NULL)
        return -1;
    for (size_t i = 0; i < table->nbuckets; i++) {
        hash_entry *entry = table->buckets[i];
        while (entry != NULL) {
            hash_entry *next = entry->next;
            size_t bucket = hash_fnv1a(entry->key) % nbuckets;
            entry->next = buckets[bucket];
            buckets[bucket] = entry;
            entry = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->nbuckets = nbuckets;
    return 0;
}
