/* The TOML reader behind profiles: a small C face over toml++ (host/profile_toml.cpp).
 *
 * The document comes back flattened two levels deep — top-level keys, and the keys of
 * top-level tables — in file order, each with where its key and its value are written.
 * Anything nested deeper shows up as a TABLE or ARRAY entry for the caller to refuse. */
#ifndef RLX_HOST_PROFILE_TOML_H
#define RLX_HOST_PROFILE_TOML_H

#include "core/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rlx__toml_kind {
    RLX__TOML_TABLE = 0,
    RLX__TOML_ARRAY = 1,
    RLX__TOML_STRING = 2,
    RLX__TOML_INTEGER = 3,
    RLX__TOML_FLOAT = 4,
    RLX__TOML_BOOLEAN = 5,
    RLX__TOML_DATE_TIME = 6,
} rlx__toml_kind;

typedef struct rlx__toml_entry {
    char *table;            /* NULL for a top-level key */
    char *key;
    rlx__toml_kind kind;
    int key_line, key_col;  /* 1-based; where the key (or table header name) is written */
    int line, col;          /* where the value starts */
    char *s;                /* STRING */
    int64_t i;              /* INTEGER */
    double f;               /* FLOAT */
    int b;                  /* BOOLEAN */
} rlx__toml_entry;

typedef struct rlx__toml_doc {
    rlx__toml_entry *e;
    size_t n;
} rlx__toml_doc;

/* Parses len bytes of TOML (any bytes: profile_toml.cpp says how toml++ is kept safe on them).
 * A syntax error (duplicate keys included) is RLX_ERR_PROFILE with
 * "<source>:<line>:<col>: TOML syntax error: <what>"; so are bytes that are not UTF-8, and a key,
 * table name or string (of the two levels returned) holding a NUL or a non-ASCII character —
 * "<source>:<line>:<col>: the string holds a NUL character". Out of memory is
 * RLX_ERR_OUT_OF_MEMORY. Nothing is thrown across this boundary. */
rlx_status rlx__toml_read(const char *text, size_t len, const char *source, rlx__toml_doc *out);
void rlx__toml_free(rlx__toml_doc *doc);

const char *rlx__toml_kind_name(rlx__toml_kind kind);

#ifdef __cplusplus
}
#endif

#endif
