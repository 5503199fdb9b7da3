/* clib/str.h: growable strings and small helpers for NUL-terminated strings. */
#ifndef CLIB_STR_H
#define CLIB_STR_H

#include <stddef.h>

/* A string that grows as characters are appended; `data` is always terminated. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} strbuf;

void strbuf_init(strbuf *buf);
void strbuf_free(strbuf *buf);
void strbuf_clear(strbuf *buf);
int strbuf_putc(strbuf *buf, char c);           /* 0, or -1 when out of memory */
int strbuf_puts(strbuf *buf, const char *text); /* 0, or -1 when out of memory */

char *str_dup(const char *text);                /* a malloc'd copy, or NULL */
void str_lower(char *text);                     /* in place, ASCII letters only */
char *str_trim(char *text);                     /* spaces cut at both ends, in place */
int str_starts_with(const char *text, const char *prefix);

/* Cut `text` at each `sep` (in place); at most `max` fields; returns how many. */
size_t str_split(char *text, char sep, char **fields, size_t max);

/* The library's version, as the VERSION file said when it was built. */
const char *clib_version(void);

#endif
