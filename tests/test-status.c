#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "rlx/flow.h"

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

Test(status, version_of_headers_and_library_agree) {
    cr_expect_eq(rlx_version(), RLX_VERSION);
    cr_expect_eq(RLX_VERSION, RLX_VERSION_MAJOR * 10000 + RLX_VERSION_MINOR * 100 + RLX_VERSION_PATCH);
    cr_expect_str_eq(rlx_version_string(), RLX_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", RLX_VERSION_MAJOR, RLX_VERSION_MINOR, RLX_VERSION_PATCH);
    cr_expect_str_eq(RLX_VERSION_STRING, want);
}

Test(status, device_compiled) {
    cr_expect_eq(rlx_device_compiled(RLX_DEVICE_CPU), 1);
    cr_expect_eq(rlx_device_compiled(RLX_DEVICE_AUTO), 1);
    /* this program does not link the simt test device */
    cr_expect_eq(rlx_device_compiled(RLX_DEVICE_SIMT), 0);
    cr_expect_eq(rlx_device_compiled((rlx_device_kind)99), 0);
    cr_expect_eq(rlx_device_compiled((rlx_device_kind)-1), 0);
}
