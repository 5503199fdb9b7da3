/* check.h: the smallest test harness: CHECK counts failures and says where. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

extern int check_failures;

#define CHECK(condition)                                                        \
    do {                                                                        \
        if (!(condition)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,    \
                    #condition);                                                \
            check_failures++;                                                   \
        }                                                                       \
    } while (0)

void test_str(void);
void test_hash(void);
void test_list(void);

#endif
