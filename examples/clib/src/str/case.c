/* ASCII case folding, independent of the locale. */
#include "clib/str.h"

void str_lower(char *text)
{
    for (; *text != '\0'; text++)
        if (*text >= 'A' && *text <= 'Z')
            *text = (char)(*text - 'A' + 'a');
}
