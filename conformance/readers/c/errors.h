/* The closed list of error codes a reader reports (spec: "Error codes"). */
#ifndef MLA_ERRORS_H
#define MLA_ERRORS_H

typedef enum {
    MLA_OK = 0,
    MLA_NOT_A_FRAME,
    MLA_TRUNCATED_FILE,
    MLA_CORRUPT_FRAME,
    MLA_FORBIDDEN_METALAYER,
    MLA_MISSING_HEADER,
    MLA_HEADER_ENCODING,
    MLA_HEADER_NOT_JSON,
    MLA_HEADER_TOO_LARGE,
    MLA_UNSUPPORTED_VERSION,
    MLA_HEADER_INVALID,
    MLA_FRAME_MISMATCH,
    MLA_RESOURCE_LIMIT,
    MLA_DIGEST_MISMATCH,
} mla_code;

/* The code's name as the spec spells it ("NOT_A_FRAME", ...). */
const char *mla_code_name(mla_code code);

/* Set *err to code with a printf-style message (kept only for the first error); returns code. */
typedef struct {
    mla_code code;
    char message[512];
} mla_error;

mla_code mla_fail(mla_error *err, mla_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
