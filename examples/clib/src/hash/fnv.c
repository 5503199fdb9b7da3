/* FNV-1a, 32 bits: small, and good enough for a word counter. */
#include "clib/hash.h"

uint32_t hash_fnv1a(const char *text)
{
    uint32_t hash = 2166136261u;
    for (; *text != '\0'; text++) {
        hash ^= (unsigned char)*text;
        hash *= 16777619u;
    }
    return hash;
}
