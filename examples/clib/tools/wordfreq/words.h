/* words.h: reading words from a stream into a counting table. */
#ifndef WORDFREQ_WORDS_H
#define WORDFREQ_WORDS_H

#include <stdio.h>

#include "clib/hash.h"

/* Count each word (letters and digits, folded to lower case) read from `in`;
   0, or -1 when out of memory. */
int count_words(FILE *in, hash_table *counts);

#endif
