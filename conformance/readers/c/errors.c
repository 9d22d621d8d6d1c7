/* Error code names and the one helper that records an error. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *mla_code_name(mla_code code) {
    static const char *const names[] = {
        "OK",
        "NOT_A_FRAME",
        "TRUNCATED_FILE",
        "CORRUPT_FRAME",
        "FORBIDDEN_METALAYER",
        "MISSING_HEADER",
        "HEADER_ENCODING",
        "HEADER_NOT_JSON",
        "HEADER_TOO_LARGE",
        "UNSUPPORTED_VERSION",
        "HEADER_INVALID",
        "FRAME_MISMATCH",
        "RESOURCE_LIMIT",
        "DIGEST_MISMATCH",
    };
    return (unsigned)code < sizeof names / sizeof names[0] ? names[code] : "UNKNOWN";
}

mla_code mla_fail(mla_error *err, mla_code code, const char *fmt, ...) {
    if (err->code == MLA_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
