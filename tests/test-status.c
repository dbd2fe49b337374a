#include <criterion/criterion.h>
#include <string.h>

#include "core/internal.h"

Test(status, strings_cover_every_status) {
#define CHECK(name, value, msg) cr_expect_str_eq(rlx_status_string(name), msg);
    RLX_STATUS_MAP(CHECK)
#undef CHECK
    cr_expect_str_eq(rlx_status_name(RLX_ERR_OUT_OF_MEMORY), "RLX_ERR_OUT_OF_MEMORY");
    cr_expect_str_eq(rlx_status_string((rlx_status)999), "unknown status");
}

Test(status, last_error_is_recorded_and_prefixed) {
    rlx_clear_error();
    cr_expect_str_eq(rlx_last_error(), "");
    rlx_status s = rlx__fail(RLX_ERR_FORMAT, "file %s: bad", "a.bin");
    cr_expect_eq(s, RLX_ERR_FORMAT);
    cr_expect_str_eq(rlx_last_error(), "file a.bin: bad");
    rlx__fail_prefix(RLX_ERR_FORMAT, "loading %d", 3);
    cr_expect_str_eq(rlx_last_error(), "loading 3: file a.bin: bad");
}
