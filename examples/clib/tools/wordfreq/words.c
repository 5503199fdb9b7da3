/* Words are runs of ASCII letters and digits; everything else separates them. */
#include "words.h"

#include "clib/str.h"

static int is_word_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int flush(strbuf *word, hash_table *counts)
{
    if (word->len == 0)
        return 0;
    str_lower(word->data);
    long *slot = hash_slot(counts, word->data);
    if (slot == NULL)
        return -1;
    ++*slot;
    strbuf_clear(word);
    return 0;
}

int count_words(FILE *in, hash_table *counts)
{
    strbuf word;
    strbuf_init(&word);
    int c, status = 0;
    while (status == 0 && (c = getc(in)) != EOF) {
        if (is_word_char(c))
            status = strbuf_putc(&word, (char)c);
        else
            status = flush(&word, counts);
    }
    if (status == 0)
        status = flush(&word, counts);
    strbuf_free(&word);
    return status;
}
