/* Tests of libstr. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clib/str.h"

void test_str(void)
{
    strbuf buf;
    strbuf_init(&buf);
    for (int i = 0; i < 100; i++)
        CHECK(strbuf_putc(&buf, (char)('a' + i % 26)) == 0);
    CHECK(buf.len == 100 && buf.data[26] == 'a' && buf.data[100] == '\0');
    strbuf_clear(&buf);
    CHECK(strbuf_puts(&buf, "Hello") == 0 && strcmp(buf.data, "Hello") == 0);
    str_lower(buf.data);
    CHECK(strcmp(buf.data, "hello") == 0);
    strbuf_free(&buf);

    char *copy = str_dup("  padded\t\n");
    CHECK(strcmp(str_trim(copy), "padded") == 0);
    free(copy);
    CHECK(str_starts_with("prefix-rest", "prefix"));
    CHECK(!str_starts_with("pre", "prefix"));

    char line[] = "a,b,,c";
    char *fields[8];
    CHECK(str_split(line, ',', fields, 8) == 4);
    CHECK(strcmp(fields[0], "a") == 0 && strcmp(fields[2], "") == 0
          && strcmp(fields[3], "c") == 0);
}
