/* wordfreq: the most frequent words of standard input.

   usage: wordfreq [-n COUNT] [--version] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clib/hash.h"
#include "clib/list.h"
#include "clib/str.h"
#include "version.h"
#include "words.h"

static void collect(const char *key, long value, void *context)
{
    if (list_push(context, key, value) != 0) {
        fputs("wordfreq: out of memory\n", stderr);
        exit(1);
    }
}

static int usage(void)
{
    fputs("usage: wordfreq [-n COUNT] [--version]\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    long limit = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("wordfreq %s (clib %s)\n", CLIB_VERSION, clib_version());
            return 0;
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            limit = strtol(argv[++i], NULL, 10);
        } else {
            return usage();
        }
    }
    hash_table counts;
    list sorted;
    if (hash_init(&counts, 64) != 0 || count_words(stdin, &counts) != 0) {
        fputs("wordfreq: out of memory\n", stderr);
        return 1;
    }
    list_init(&sorted);
    hash_each(&counts, collect, &sorted);
    list_sort(&sorted);
    for (size_t i = 0; i < sorted.len && (long)i < limit; i++)
        printf("%ld %s\n", sorted.items[i].value, sorted.items[i].key);
    list_free(&sorted);
    hash_free(&counts);
    return 0;
}
