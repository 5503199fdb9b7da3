/* Growable strings: doubling capacity keeps appends cheap. */
#include <stdlib.h>

#include "clib/str.h"

void strbuf_init(strbuf *buf)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void strbuf_free(strbuf *buf)
{
    free(buf->data);
    strbuf_init(buf);
}

void strbuf_clear(strbuf *buf)
{
    buf->len = 0;
    if (buf->data != NULL)
        buf->data[0] = '\0';
}

static int reserve(strbuf *buf, size_t needed)
{
    if (needed <= buf->cap)
        return 0;
    size_t cap = buf->cap ? buf->cap * 2 : 16;
    while (cap < needed)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (data == NULL)
        return -1;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

int strbuf_putc(strbuf *buf, char c)
{
    if (reserve(buf, buf->len + 2) != 0)
        return -1;
    buf->data[buf->len++] = c;
    buf->data[buf->len] = '\0';
    return 0;
}

int strbuf_puts(strbuf *buf, const char *text)
{
    for (; *text != '\0'; text++)
        if (strbuf_putc(buf, *text) != 0)
            return -1;
    return 0;
}
