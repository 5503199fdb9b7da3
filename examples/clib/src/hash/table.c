/* A chained hash table whose keys are copies the table owns. */
#include <stdlib.h>
#include <string.h>

#include "clib/hash.h"
#include "clib/str.h"

int hash_init(hash_table *table, size_t nbuckets)
{
    table->nbuckets = nbuckets ? nbuckets : 8;
    table->count = 0;
    table->buckets = calloc(table->nbuckets, sizeof *table->buckets);
    return table->buckets ? 0 : -1;
}

void hash_free(hash_table *table)
{
    for (size_t i = 0; i < table->nbuckets; i++) {
        hash_entry *entry = table->buckets[i];
        while (entry != NULL) {
            hash_entry *next = entry->next;
            free(entry->key);
            free(entry);
            entry = next;
        }
    }
    free(table->buckets);
    table->buckets = NULL;
    table->nbuckets = table->count = 0;
}

static hash_entry *find(const hash_table *table, const char *key)
{
    hash_entry *entry = table->buckets[hash_fnv1a(key) % table->nbuckets];
    while (entry != NULL && strcmp(entry->key, key) != 0)
        entry = entry->next;
    return entry;
}

long hash_get(const hash_table *table, const char *key, long missing)
{
    const hash_entry *entry = find(table, key);
    return entry ? entry->value : missing;
}

long *hash_slot(hash_table *table, const char *key)
{
    hash_entry *entry = find(table, key);
    if (entry != NULL)
        return &entry->value;
    if (table->count >= 2 * table->nbuckets
            && hash_resize(table, 4 * table->nbuckets) != 0)
        return NULL;
    entry = malloc(sizeof *entry);
    if (entry == NULL)
        return NULL;
    entry->key = str_dup(key);
    if (entry->key == NULL) {
        free(entry);
        return NULL;
    }
    size_t bucket = hash_fnv1a(key) % table->nbuckets;
    entry->value = 0;
    entry->next = table->buckets[bucket];
    table->buckets[bucket] = entry;
    table->count++;
    return &entry->value;
}
