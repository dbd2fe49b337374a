/* Status strings and the thread-local last-error message. */
#include "core/internal.h"
#include "rlx/flow.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char rlx__error_buf[1024];

const char *rlx_status_string(rlx_status status) {
    switch (status) {
#define RLX__STATUS_CASE(name, value, msg) \
    case name:                             \
        return msg;
        RLX_STATUS_MAP(RLX__STATUS_CASE)
#undef RLX__STATUS_CASE
    }
    return "unknown status";
}

const char *rlx_status_name(rlx_status status) {
    switch (status) {
#define RLX__STATUS_CASE(name, value, msg) \
    case name:                             \
        return #name;
        RLX_STATUS_MAP(RLX__STATUS_CASE)
#undef RLX__STATUS_CASE
    }
    return "RLX_ERR_UNKNOWN";
}

int rlx__status_known(rlx_status status) {
    switch (status) {
#define RLX__STATUS_CASE(name, value, msg) \
    case name:                             \
        return 1;
        RLX_STATUS_MAP(RLX__STATUS_CASE)
#undef RLX__STATUS_CASE
    }
    return 0;
}

const char *rlx_last_error(void) { return rlx__error_buf; }

void rlx_clear_error(void) { rlx__error_buf[0] = '\0'; }

rlx_status rlx__fail(rlx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rlx__error_buf, sizeof rlx__error_buf, fmt, ap);
    va_end(ap);
    return status;
}

rlx_status rlx__fail_prefix(rlx_status status, const char *fmt, ...) {
    /* Prepends context to the current message: "while building layer 3: <old>". */
    char old[sizeof rlx__error_buf];
    memcpy(old, rlx__error_buf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rlx__error_buf, sizeof rlx__error_buf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof rlx__error_buf) {
        /* the combined message is cut at the buffer's end, like any other */
        int m = snprintf(rlx__error_buf + n, sizeof rlx__error_buf - (size_t)n, ": %s", old);
        (void)m;
    }
    return status;
}

unsigned rlx_version(void) { return RLX_VERSION; }

const char *rlx_version_string(void) { return RLX_VERSION_STRING; }

/* One table: name and size of every rlx_dtype, in enum order. */
static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"I64", 8},     {"I16", 2},     {"I8", 1},       {"U8", 1},
    {"BOOL", 1}, {"F64", 8}, {"U16", 2}, {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
};

const char *rlx_dtype_name(rlx_dtype dtype) {
    return (unsigned)dtype < sizeof dtype_info / sizeof dtype_info[0] ? dtype_info[dtype].name : "?";
}

size_t rlx_dtype_size(rlx_dtype dtype) {
    return (unsigned)dtype < sizeof dtype_info / sizeof dtype_info[0] ? dtype_info[dtype].size : 0;
}

int rlx_dtype_is_float_weight(rlx_dtype dtype) {
    return dtype == RLX_DTYPE_F32 || dtype == RLX_DTYPE_F16 || dtype == RLX_DTYPE_BF16;
}

const char *rlx_device_kind_name(rlx_device_kind k) {
    switch (k) {
    case RLX_DEVICE_AUTO: return "auto";
    case RLX_DEVICE_CPU: return "cpu";
    case RLX_DEVICE_CUDA: return "cuda";
    case RLX_DEVICE_SIMT: return "simt";
    }
    return "?";
}
