/* clib_check: runs every test; exits 1 if any CHECK failed. */
#include <string.h>

#include "check.h"
#include "clib/str.h"
#include "version.h"

int check_failures = 0;

int main(void)
{
    CHECK(strcmp(clib_version(), CLIB_VERSION) == 0);
    test_str();
    test_hash();
    test_list();
    if (check_failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", check_failures);
        return 1;
    }
    printf("all checks passed (clib %s)\n", clib_version());
    return 0;
}
