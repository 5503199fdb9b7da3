/* str_dup: strdup is POSIX, not C11. */
#include <stdlib.h>
#include <string.h>

#include "clib/str.h"

char *str_dup(const char *text)
{
    size_t size = strlen(text) + 1;
    char *copy = malloc(size);
    if (copy != NULL)
        memcpy(copy, text, size);
    return copy;
}
