/* Compile profiles: arbitrary bytes through the TOML reader (rlx__toml_read, NULs included) and
 * the NUL-terminated text through rlx_profile_parse. An accepted profile must validate and
 * format. */
#include "rlx/profile.h"
#include "model/profile_toml.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rlx__toml_doc doc;
    rlx_clear_error();
    rlx_status s = rlx__toml_read((const char *)data, size, "fuzz.rlx.toml", &doc);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s == RLX_OK) {
        for (size_t i = 0; i < doc.n; i++) {
            FUZZ_CHECK(doc.e[i].key != NULL);
            FUZZ_CHECK(doc.e[i].kind != RLX__TOML_STRING || doc.e[i].s != NULL);
        }
        rlx__toml_free(&doc);
    }
    char *text = fuzz_cstr(data, size);
    rlx_profile p;
    rlx_clear_error();
    s = rlx_profile_parse(text, "fuzz.rlx.toml", &p);
    free(text);
    FUZZ_FAILED_WITH_MESSAGE(s);
    if (s != RLX_OK) return 0;
    FUZZ_CHECK(rlx_profile_validate(&p) == RLX_OK);
    char *line = NULL;
    FUZZ_CHECK(rlx_profile_format(&p, &line) == RLX_OK);
    rlx_free(line);
    return 0;
}
