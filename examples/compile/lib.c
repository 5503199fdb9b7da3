#include <stdio.h>

void print_message(const char *name) {
    printf("Hello, %s!\n", name);
}
