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

const char *rlx_version_string(void) { return "0.1.0"; }

const char *rlx_dtype_name(rlx_dtype dtype) {
    switch (dtype) {
    case RLX_DTYPE_F32: return "F32";
    case RLX_DTYPE_F16: return "F16";
    case RLX_DTYPE_BF16: return "BF16";
    case RLX_DTYPE_I32: return "I32";
    }
    return "?";
}

size_t rlx_dtype_size(rlx_dtype dtype) {
    switch (dtype) {
    case RLX_DTYPE_F32: return 4;
    case RLX_DTYPE_F16: return 2;
    case RLX_DTYPE_BF16: return 2;
    case RLX_DTYPE_I32: return 4;
    }
    return 0;
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
