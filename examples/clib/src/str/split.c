/* Splitting in place: the fields point into the caller's string. */
#include "clib/str.h"

size_t str_split(char *text, char sep, char **fields, size_t max)
{
    size_t count = 0;
    if (max == 0)
        return 0;
    fields[count++] = text;
    for (; *text != '\0' && count < max; text++) {
        if (*text == sep) {
            *text = '\0';
            fields[count++] = text + 1;
        }
    }
    return count;
}
