/* The version comes from build/gen/version.h, which the build writes from VERSION. */
#include "clib/str.h"
#include "version.h"

const char *clib_version(void)
{
    return CLIB_VERSION;
}
