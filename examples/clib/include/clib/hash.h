/* clib/hash.h: string hashing and a table from strings to counters. */
#ifndef CLIB_HASH_H
#define CLIB_HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t hash_fnv1a(const char *text);

typedef struct hash_entry {
    char *key;
    long value;
    struct hash_entry *next;
} hash_entry;

typedef struct {
    hash_entry **buckets;
    size_t nbuckets;
    size_t count;
} hash_table;

int hash_init(hash_table *table, size_t nbuckets);     /* 0, or -1 when out of memory */
void hash_free(hash_table *table);

/* The counter for `key`, created at 0 if new (the table grows as needed); NULL when
   out of memory. */
long *hash_slot(hash_table *table, const char *key);
long hash_get(const hash_table *table, const char *key, long missing);

/* Grow to at least `nbuckets` buckets, keeping every entry. */
int hash_resize(hash_table *table, size_t nbuckets);

typedef void (*hash_visit)(const char *key, long value, void *context);
void hash_each(const hash_table *table, hash_visit visit, void *context);

#endif
