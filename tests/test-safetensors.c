/* safetensors validation: every rule of the reference implementation, each broken on purpose in
 * a file built here, must give the exact status and a message naming the file and the reason. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/internal.h"
#include "rlx/weights.h"
#include "io/safetensors.h"
#include "testutil.h"

static char *g_dir;

static void setup(void) {
    g_dir = rlxt_tmpdir();
    cr_assert_not_null(g_dir, "cannot make a temporary directory");
}

static void teardown(void) {
    rlxt_rmtree(g_dir);
    free(g_dir);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

/* File image: u64 LE length of the header, the header (single quotes become double quotes so
 * the JSON reads cleanly here), then ndata bytes of a recognisable pattern. */
static unsigned char *st_image(const char *header_sq, uint64_t declared_len, size_t ndata, size_t *len) {
    size_t h = strlen(header_sq);
    unsigned char *buf = malloc(8 + h + ndata + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared_len >> (8 * i));
    for (size_t i = 0; i < h; i++) buf[8 + i] = header_sq[i] == '\'' ? '"' : (unsigned char)header_sq[i];
    for (size_t i = 0; i < ndata; i++) buf[8 + h + i] = (unsigned char)(i * 7 + 1);
    *len = 8 + h + ndata;
    return buf;
}

static char *st_file_len(const char *name, const char *header_sq, uint64_t declared, size_t ndata) {
    size_t len;
    unsigned char *buf = st_image(header_sq, declared, ndata, &len);
    char *path = rlxt_write_file(g_dir, name, buf, len);
    free(buf);
    return path;
}

static char *st_file(const char *name, const char *header_sq, size_t ndata) {
    return st_file_len(name, header_sq, strlen(header_sq), ndata);
}

/* Opens path, expects status want, no handle, and a message holding the path and every needle. */
static void expect_fail(const char *path, rlx_status want, ...) {
    rlx_weights *w = (rlx_weights *)&w;
    rlx_clear_error();
    rlx_status s = rlx_weights_open_file(path, &w);
    cr_expect_eq(s, want, "status %s, want %s; message: %s", rlx_status_name(s),
                 rlx_status_name(want), rlx_last_error());
    cr_expect_null(w, "a failed open must leave *out NULL");
    const char *msg = rlx_last_error();
    cr_log_info("%s: %s", rlx_status_name(s), msg);
    cr_expect(strstr(msg, path) != NULL, "message does not name the file %s: %s", path, msg);
    va_list ap;
    va_start(ap, want);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_expect(strstr(msg, needle) != NULL, "message lacks \"%s\": %s", needle, msg);
    va_end(ap);
    if (s == RLX_OK) rlx_weights_destroy(w);
}

static rlx_weights *expect_open(const char *path) {
    rlx_weights *w = NULL;
    rlx_status s = rlx_weights_open_file(path, &w);
    cr_assert_eq(s, RLX_OK, "open %s: %s: %s", path, rlx_status_name(s), rlx_last_error());
    cr_assert_not_null(w);
    return w;
}

#define T1 "'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}"

// ---- the length prefix -----------------------------------------------------------------------

Test(safetensors, file_shorter_than_length_prefix) {
    char *p = rlxt_write_file(g_dir, "short.safetensors", "\x08\0\0\0\0", 5);
    expect_fail(p, RLX_ERR_FORMAT, "5 bytes", "8-byte header length", NULL);
    free(p);
}

Test(safetensors, empty_file) {
    char *p = rlxt_write_file(g_dir, "empty.safetensors", "", 0);
    expect_fail(p, RLX_ERR_FORMAT, "0 bytes", NULL);
    free(p);
}

Test(safetensors, header_length_beyond_file) {
    char *p = st_file_len("beyond.safetensors", "{" T1 "}", 1000, 8);
    expect_fail(p, RLX_ERR_FORMAT, "header length 1000", "past the end", NULL);
    free(p);
}

Test(safetensors, header_length_over_cap) {
    /* The cap is checked before the file length: a 100,000,001-byte header is refused even
     * though the file is tiny, and one byte less is merely "past the end". */
    char *p = st_file_len("cap.safetensors", "{}", 100000001ull, 0);
    expect_fail(p, RLX_ERR_FORMAT, "100000001", "limit of 100000000", NULL);
    free(p);
    p = st_file_len("cap2.safetensors", "{}", 100000000ull, 0);
    expect_fail(p, RLX_ERR_FORMAT, "past the end", NULL);
    free(p);
    p = st_file_len("cap3.safetensors", "{}", UINT64_MAX, 0);
    expect_fail(p, RLX_ERR_FORMAT, "limit", NULL);
    free(p);
}

// ---- the JSON --------------------------------------------------------------------------------

Test(safetensors, invalid_json) {
    char *p = st_file("badjson.safetensors", "{'a':{'dtype':'F32',}}", 0);
    expect_fail(p, RLX_ERR_FORMAT, "not valid JSON", "line 1", NULL);
    free(p);
}

Test(safetensors, trailing_garbage_after_json) {
    char *p = st_file("garbage.safetensors", "{}xx", 0);
    expect_fail(p, RLX_ERR_FORMAT, "not valid JSON", NULL);
    free(p);
}

Test(safetensors, header_not_utf8) {
    char *p = st_file("utf8.safetensors", "{'\xff\xfe':{'dtype':'F32','shape':[0],'data_offsets':[0,0]}}", 0);
    expect_fail(p, RLX_ERR_FORMAT, "not valid JSON", NULL);
    free(p);
}

Test(safetensors, header_not_an_object) {
    char *p = st_file("array.safetensors", "[1, 2]  ", 0);
    expect_fail(p, RLX_ERR_FORMAT, "header is an array", "expected a JSON object", NULL);
    free(p);
    p = st_file("number.safetensors", "12345678", 0);
    expect_fail(p, RLX_ERR_FORMAT, "not valid JSON", NULL);
    free(p);
}

Test(safetensors, duplicate_names) {
    char *p = st_file("dup.safetensors",
                      "{'w.x':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                      "'w.x':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}",
                      8);
    expect_fail(p, RLX_ERR_FORMAT, "duplicate", "w.x", NULL);
    free(p);
}

/* A JSON key may be "", a tensor name may not (as in rlx_weights_add); found by fuzz-safetensors. */
Test(safetensors, empty_tensor_name) {
    char *p = st_file("noname.safetensors", "{'':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 4);
    expect_fail(p, RLX_ERR_FORMAT, "noname.safetensors: a tensor has an empty name", NULL);
    free(p);
}

Test(safetensors, entry_not_an_object) {
    char *p = st_file("entry.safetensors", "{'a':[1,2]}", 0);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "entry is an array", NULL);
    free(p);
}

Test(safetensors, missing_keys) {
    char *p = st_file("nodtype.safetensors", "{'a':{'shape':[2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "missing key 'dtype'", NULL);
    free(p);
    p = st_file("noshape.safetensors", "{'a':{'dtype':'F32','data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "missing key 'shape'", NULL);
    free(p);
    p = st_file("nooffs.safetensors", "{'a':{'dtype':'F32','shape':[2]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "missing key 'data_offsets'", NULL);
    free(p);
}

Test(safetensors, extra_key) {
    char *p = st_file("extra.safetensors",
                      "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8],'strides':[1]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "unexpected key 'strides'", NULL);
    free(p);
}

Test(safetensors, metadata_must_hold_strings) {
    char *p = st_file("meta.safetensors", "{'__metadata__':{'format':'pt','step':3}," T1 "}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "'__metadata__' key 'step'", "expected a string", NULL);
    free(p);
    p = st_file("meta2.safetensors", "{'__metadata__':['pt']," T1 "}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "'__metadata__' is an array", NULL);
    free(p);
}

Test(safetensors, dtype_not_a_string) {
    char *p = st_file("dtnum.safetensors", "{'a':{'dtype':4,'shape':[2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "'dtype' is an integer", NULL);
    free(p);
}

Test(safetensors, unknown_dtype) {
    char *p = st_file("unk.safetensors", "{'a':{'dtype':'F33','shape':[2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "unknown dtype 'F33'", NULL);
    free(p);
    /* dtype names are case-sensitive in the reference */
    p = st_file("lower.safetensors", "{'a':{'dtype':'f32','shape':[2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "unknown dtype 'f32'", NULL);
    free(p);
}

Test(safetensors, non_float_dtypes_are_held) {
    /* Old checkpoints carry int64 position_ids and bool masks: a file with them opens, and each
     * tensor keeps its type so the build can name one a stage needs. */
    const char *names[] = {"I64", "F64", "I8", "U8", "I16", "U16", "I32", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0"};
    const size_t sizes[] = {8, 8, 1, 1, 2, 2, 4, 4, 8, 1, 1, 1, 1};
    const rlx_dtype types[] = {RLX_DTYPE_I64, RLX_DTYPE_F64,  RLX_DTYPE_I8,      RLX_DTYPE_U8,      RLX_DTYPE_I16,
                               RLX_DTYPE_U16, RLX_DTYPE_I32,  RLX_DTYPE_U32,     RLX_DTYPE_U64,     RLX_DTYPE_BOOL,
                               RLX_DTYPE_F8_E4M3, RLX_DTYPE_F8_E5M2, RLX_DTYPE_F8_E8M0};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char hdr[200];
        snprintf(hdr, sizeof hdr,
                 "{'t':{'dtype':'%s','shape':[3],'data_offsets':[0,%zu]},'w':{'dtype':'F32','shape':[2],'data_offsets':[%zu,%zu]}}",
                 names[i], 3 * sizes[i], 3 * sizes[i], 3 * sizes[i] + 8);
        char *q = st_file("held.safetensors", hdr, 3 * sizes[i] + 8);
        rlx_weights *w = expect_open(q);
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_get(w, "t", &v), RLX_OK);
        cr_expect_eq(v.dtype, types[i], "%s", names[i]);
        cr_expect_str_eq(rlx_dtype_name(v.dtype), names[i]);
        cr_expect_eq(v.nbytes, 3 * sizes[i]);
        cr_expect_eq(rlx_dtype_size(v.dtype), sizes[i]);
        cr_expect_eq(rlx_dtype_is_float_weight(v.dtype), 0, "%s", names[i]);
        cr_expect_eq((uintptr_t)v.data % sizes[i], 0, "%s view unaligned", names[i]);
        /* and it survives a save and reopen byte for byte */
        char out[600];
        snprintf(out, sizeof out, "%s/held-copy.safetensors", g_dir);
        cr_assert_eq(rlx_weights_save_file(w, out), RLX_OK, "%s", rlx_last_error());
        rlx_weights *w2 = expect_open(out);
        rlx_tensor_view v2;
        cr_assert_eq(rlx_weights_get(w2, "t", &v2), RLX_OK);
        cr_expect_eq(v2.dtype, types[i]);
        cr_expect(v2.nbytes == v.nbytes && !memcmp(v2.data, v.data, v.nbytes), "%s changed in a round trip", names[i]);
        rlx_weights_destroy(w2);
        rlx_weights_destroy(w);
        free(q);
    }
}

Test(safetensors, unsupported_dtypes) {
    /* sub-byte and complex types cannot be viewed as element arrays */
    const char *names[] = {"F4", "F6_E2M3", "F6_E3M2", "C64"};
    const size_t bytes[] = {4, 6, 6, 64};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char hdr[160];
        snprintf(hdr, sizeof hdr, "{'t':{'dtype':'%s','shape':[8],'data_offsets':[0,%zu]}}", names[i], bytes[i]);
        char *q = st_file("u.safetensors", hdr, bytes[i]);
        char needle[64];
        snprintf(needle, sizeof needle, "unsupported dtype %s", names[i]);
        expect_fail(q, RLX_ERR_UNSUPPORTED, "tensor 't'", needle, NULL);
        free(q);
    }
}

Test(safetensors, malformed_wins_over_unsupported) {
    /* An F4 tensor in a file whose offsets are also wrong: the file is broken, say so. */
    char *p = st_file("both.safetensors", "{'ids':{'dtype':'F4','shape':[32],'data_offsets':[0,16]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensors cover 16", NULL);
    free(p);
}

Test(safetensors, too_many_dims_is_unsupported) {
    char *p = st_file("dims.safetensors",
                      "{'a':{'dtype':'F32','shape':[1,1,1,1,1,1,1,1,2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_UNSUPPORTED, "tensor 'a'", "9 dimensions", NULL);
    free(p);
}

// ---- shapes and offsets ----------------------------------------------------------------------

Test(safetensors, byte_size_differs_from_shape_times_dtype) {
    char *p = st_file("size.safetensors",
                      "{'model.norm.weight':{'dtype':'F32','shape':[64],'data_offsets':[0,100]}}", 100);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'model.norm.weight'",
                "data_offsets [0, 100] hold 100 bytes but shape [64] x F32 needs 256", NULL);
    free(p);
}

Test(safetensors, shape_times_dtype_overflows) {
    char *p = st_file("ovf.safetensors",
                      "{'a':{'dtype':'F32','shape':[4294967296,4294967296],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "overflows", NULL);
    free(p);
    /* fits as an element count, overflows only when multiplied by the element size */
    p = st_file("ovf2.safetensors",
                "{'a':{'dtype':'BF16','shape':[9223372036854775807],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "overflows", NULL);
    free(p);
}

Test(safetensors, negative_dimension) {
    char *p = st_file("neg.safetensors", "{'a':{'dtype':'F32','shape':[-2],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "shape[0] is -2", NULL);
    free(p);
}

Test(safetensors, non_integer_dimension) {
    char *p = st_file("realdim.safetensors", "{'a':{'dtype':'F32','shape':[2.0],'data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "shape[0] is a real number", NULL);
    free(p);
    p = st_file("shapestr.safetensors", "{'a':{'dtype':'F32','shape':'2','data_offsets':[0,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "'shape' is a string", NULL);
    free(p);
}

Test(safetensors, non_integer_offsets) {
    char *p = st_file("realoff.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8.0]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "data_offsets[1] is a real number", NULL);
    free(p);
    p = st_file("stroff.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':['0',8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "data_offsets[0] is a string", NULL);
    free(p);
    p = st_file("negoff.safetensors", "{'a':{'dtype':'F32','shape':[0],'data_offsets':[-1,-1]}}", 0);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "data_offsets[0] is -1", NULL);
    free(p);
    p = st_file("hugeoff.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,1e30]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "data_offsets[1] is a real number", NULL);
    free(p);
}

Test(safetensors, offsets_wrong_arity) {
    char *p = st_file("arity.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,4,8]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "expected [begin, end]", NULL);
    free(p);
}

Test(safetensors, begin_after_end) {
    char *p = st_file("rev.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':[8,0]}}", 8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "[8, 0] end before they begin", NULL);
    free(p);
}

Test(safetensors, offsets_gap) {
    char *p = st_file("gap.safetensors",
                      "{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
                      "'b':{'dtype':'F32','shape':[1],'data_offsets':[8,12]}}",
                      12);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'b'", "gap of 4 bytes", "'a'", NULL);
    free(p);
}

Test(safetensors, offsets_overlap) {
    char *p = st_file("overlap.safetensors",
                      "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                      "'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}",
                      12);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'b'", "overlap tensor 'a'", NULL);
    free(p);
    /* Two names, one range: aliasing is overlap too. */
    p = st_file("alias.safetensors",
                "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                "'b':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}",
                8);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'b'", "overlap tensor 'a'", NULL);
    free(p);
}

Test(safetensors, offsets_not_starting_at_zero) {
    char *p = st_file("start.safetensors", "{'a':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}", 12);
    expect_fail(p, RLX_ERR_FORMAT, "tensor 'a'", "must start at 0", NULL);
    free(p);
}

Test(safetensors, data_shorter_than_declared) {
    char *p = st_file("shortdata.safetensors", "{" T1 "}", 7);
    expect_fail(p, RLX_ERR_FORMAT, "holds 7 bytes of data", "tensors cover 8", NULL);
    free(p);
}

Test(safetensors, data_longer_than_declared) {
    char *p = st_file("longdata.safetensors", "{" T1 "}", 9);
    expect_fail(p, RLX_ERR_FORMAT, "holds 9 bytes of data", "tensors cover 8", NULL);
    free(p);
    p = st_file("emptylong.safetensors", "{}", 1);
    expect_fail(p, RLX_ERR_FORMAT, "holds 1 bytes of data", "tensors cover 0", NULL);
    free(p);
}

Test(safetensors, io_errors) {
    char missing[512];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", g_dir);
    expect_fail(missing, RLX_ERR_IO, "No such file", NULL);
    expect_fail(g_dir, RLX_ERR_IO, "not a regular file", NULL);
    /* A FIFO must be refused, not block the open forever. */
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/fifo.safetensors", g_dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    expect_fail(fifo, RLX_ERR_IO, "not a regular file", NULL);
}

// ---- good files ------------------------------------------------------------------------------

Test(safetensors, whitespace_and_padding_in_header) {
    char *p = st_file("ws.safetensors",
                      " \n\t{ 'a' : { 'dtype' : 'F32' ,\r\n 'shape' : [ 2 ] , 'data_offsets' : [ 0 , 8 ] } }"
                      "       ",
                      8);
    rlx_weights *w = expect_open(p);
    rlx_tensor_view v;
    cr_assert_eq(rlx_weights_get(w, "a", &v), RLX_OK, "%s", rlx_last_error());
    cr_expect_eq(v.dtype, RLX_DTYPE_F32);
    cr_expect_eq(v.ndim, 1);
    cr_expect_eq(v.shape[0], 2);
    cr_expect_eq(v.nbytes, 8);
    cr_expect_str_eq(v.file, p);
    const unsigned char *d = v.data;
    for (int i = 0; i < 8; i++) cr_expect_eq(d[i], (unsigned char)(i * 7 + 1));
    rlx_weights_destroy(w);
    free(p);
}

Test(safetensors, metadata_and_zero_size_and_scalar) {
    char *p = st_file("zero.safetensors",
                      "{'__metadata__':{'format':'pt'},"
                      "'empty':{'dtype':'BF16','shape':[0,4],'data_offsets':[0,0]},"
                      "'scalar':{'dtype':'F32','shape':[],'data_offsets':[0,4]},"
                      "'tail':{'dtype':'F16','shape':[3,0],'data_offsets':[4,4]}}",
                      4);
    rlx_weights *w = expect_open(p);
    cr_expect_eq(rlx_weights_count(w), 3, "__metadata__ is not a tensor");
    rlx_tensor_view v;
    cr_assert_eq(rlx_weights_get(w, "empty", &v), RLX_OK);
    cr_expect_eq(v.nbytes, 0);
    cr_expect_eq(v.ndim, 2);
    cr_expect_eq(v.shape[0], 0);
    cr_expect_eq(v.shape[1], 4);
    cr_assert_eq(rlx_weights_get(w, "scalar", &v), RLX_OK);
    cr_expect_eq(v.ndim, 0);
    cr_expect_eq(v.nbytes, 4);
    cr_expect(!rlx_weights_has(w, "__metadata__", NULL));
    rlx_weights_destroy(w);
    free(p);
    /* "__metadata__": null is the reference's Option::None */
    p = st_file("nullmeta.safetensors", "{'__metadata__':null," T1 "}", 8);
    w = expect_open(p);
    rlx_weights_destroy(w);
    free(p);
    /* no tensors at all */
    p = st_file("none.safetensors", "{}", 0);
    w = expect_open(p);
    cr_expect_eq(rlx_weights_count(w), 0);
    rlx_weights_destroy(w);
    free(p);
}

Test(safetensors, all_three_dtypes_and_unaligned_data) {
    /* Header padded to a multiple of 8 and F16 [3] first: the F32 tensor starts at data offset
     * 6, so at file offset 2 mod 4. Legal; rlx must still hand out an aligned view of the same
     * bytes (the mapping itself is page-aligned, so the raw pointer would be misaligned). */
    char hdr[256] = "{'h':{'dtype':'F16','shape':[3],'data_offsets':[0,6]},"
                    "'f':{'dtype':'F32','shape':[2,1],'data_offsets':[6,14]},"
                    "'b':{'dtype':'BF16','shape':[1],'data_offsets':[14,16]}}";
    while (strlen(hdr) % 8) strcat(hdr, " ");
    char *p = st_file("mixed.safetensors", hdr, 16);
    rlx__st_file raw;
    cr_assert_eq(rlx__st_open(p, &raw), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq((raw.data_start + 6) % 4, 2, "the test must place the F32 data unaligned");
    rlx__st_close(&raw);
    rlx_weights *w = expect_open(p);
    cr_assert_eq(rlx_weights_count(w), 3);
    const char *order[] = {"b", "f", "h"};
    const rlx_dtype dts[] = {RLX_DTYPE_BF16, RLX_DTYPE_F32, RLX_DTYPE_F16};
    const size_t begin[] = {14, 6, 0}, nbytes[] = {2, 8, 6};
    for (size_t i = 0; i < 3; i++) {
        rlx_tensor_view v;
        cr_assert_eq(rlx_weights_at(w, i, &v), RLX_OK);
        cr_expect_str_eq(v.name, order[i], "iteration is in name order");
        cr_expect_eq(v.dtype, dts[i]);
        cr_expect_eq(v.nbytes, nbytes[i]);
        cr_expect_eq((uintptr_t)v.data % rlx_dtype_size(v.dtype), 0, "view of '%s' unaligned", v.name);
        const unsigned char *d = v.data;
        for (size_t k = 0; k < v.nbytes; k++)
            cr_expect_eq(d[k], (unsigned char)((begin[i] + k) * 7 + 1), "%s byte %zu", v.name, k);
    }
    rlx_tensor_view v;
    cr_expect_eq(rlx_weights_at(w, 3, &v), RLX_ERR_INVALID_ARGUMENT);
    rlx_weights_destroy(w);
    free(p);
}

Test(safetensors, offsets_listed_out_of_order) {
    /* Name order and offset order differ; the reference sorts by offset before checking. */
    char *p = st_file("order.safetensors",
                      "{'a':{'dtype':'F32','shape':[1],'data_offsets':[8,12]},"
                      "'b':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
                      "'c':{'dtype':'F32','shape':[0],'data_offsets':[8,8]}}",
                      12);
    rlx_weights *w = expect_open(p);
    rlx_tensor_view v;
    cr_assert_eq(rlx_weights_get(w, "a", &v), RLX_OK);
    cr_expect_eq(((const unsigned char *)v.data)[0], (unsigned char)(8 * 7 + 1));
    rlx_weights_destroy(w);
    free(p);
}

static rlx_weights *random_set(uint64_t seed) {
    rlxt_rng r = {seed};
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    float f[37];
    rlxt_fill(&r, f, 37, 2.0f);
    uint16_t h[37], b[37];
    for (int i = 0; i < 37; i++) {
        h[i] = rlx_f32_to_f16(f[i]);
        b[i] = rlx_f32_to_bf16(f[i]);
    }
    int64_t s_f[] = {37}, s_h[] = {37, 1}, s_b[] = {1, 37, 1}, s_z[] = {0, 5};
    /* An odd-sized F16 tensor named before an F32 one: name-ordered data would misalign the F32. */
    cr_assert_eq(rlx_weights_add(w, "z.f32", RLX_DTYPE_F32, 1, s_f, f), RLX_OK, "%s", rlx_last_error());
    cr_assert_eq(rlx_weights_add(w, "a.f16", RLX_DTYPE_F16, 2, s_h, h), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "m.bf16", RLX_DTYPE_BF16, 3, s_b, b), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "e.empty", RLX_DTYPE_F32, 2, s_z, NULL), RLX_OK);
    cr_assert_eq(rlx_weights_add(w, "s.scalar", RLX_DTYPE_F32, 0, NULL, f), RLX_OK);
    return w;
}

Test(safetensors, round_trip_through_save_file) {
    rlx_weights *w = random_set(12345);
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", g_dir);
    cr_assert_eq(rlx_weights_save_file(w, path), RLX_OK, "%s", rlx_last_error());

    rlx_weights *r = expect_open(path);
    cr_assert_eq(rlx_weights_count(r), rlx_weights_count(w));
    for (size_t i = 0; i < rlx_weights_count(w); i++) {
        rlx_tensor_view a, b;
        cr_assert_eq(rlx_weights_at(w, i, &a), RLX_OK);
        cr_assert_eq(rlx_weights_at(r, i, &b), RLX_OK);
        cr_expect_str_eq(a.name, b.name);
        cr_expect_eq(a.dtype, b.dtype, "%s", a.name);
        cr_expect_eq(a.ndim, b.ndim, "%s", a.name);
        for (int d = 0; d < a.ndim; d++) cr_expect_eq(a.shape[d], b.shape[d], "%s dim %d", a.name, d);
        cr_expect_eq(a.nbytes, b.nbytes, "%s", a.name);
        cr_expect(a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0, "%s data differs", a.name);
        cr_expect_str_eq(b.file, path);
        /* Written in the reference's order, every tensor is aligned inside the mapping itself. */
        cr_expect_eq((uintptr_t)b.data % rlx_dtype_size(b.dtype), 0, "%s unaligned", b.name);
    }
    rlx_weights_destroy(r);

    /* Raw layout: header length a multiple of 8, space padding, keys in sorted order. */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    unsigned char len8[8];
    cr_assert_eq(fread(len8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)len8[i] << (8 * i);
    cr_expect_eq(n % 8, 0, "header length %llu", (unsigned long long)n);
    char *hdr = calloc(1, n + 1);
    cr_assert_eq(fread(hdr, 1, n, f), n);
    fclose(f);
    cr_expect_eq(hdr[0], '{');
    const char *keys[] = {"\"a.f16\"", "\"e.empty\"", "\"m.bf16\"", "\"s.scalar\"", "\"z.f32\""};
    const char *prev = hdr;
    for (int i = 0; i < 5; i++) {
        const char *at = strstr(hdr, keys[i]);
        cr_expect(at && at >= prev, "key %s missing or out of order in %s", keys[i], hdr);
        if (at) prev = at + 1;
    }
    size_t end = strlen(hdr);
    while (end && hdr[end - 1] == ' ') end--;
    cr_expect_eq(hdr[end - 1], '}', "only spaces may follow the JSON: %s", hdr);
    free(hdr);
    rlx_weights_destroy(w);
}

Test(safetensors, save_empty_set_matches_reference_bytes) {
    rlx_weights *w;
    cr_assert_eq(rlx_weights_create(&w), RLX_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.safetensors", g_dir);
    cr_assert_eq(rlx_weights_save_file(w, path), RLX_OK, "%s", rlx_last_error());
    FILE *f = fopen(path, "rb");
    unsigned char got[32];
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    /* The reference crate's own test_empty expects exactly these 16 bytes. */
    const unsigned char want[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    cr_assert_eq(n, 16);
    cr_expect(memcmp(got, want, 16) == 0);
    rlx_weights_destroy(w);
}

Test(safetensors, save_overwrites_a_file_that_is_still_mapped) {
    rlx_weights *w = random_set(7);
    char path[512];
    snprintf(path, sizeof path, "%s/same.safetensors", g_dir);
    cr_assert_eq(rlx_weights_save_file(w, path), RLX_OK);
    rlx_weights *r = expect_open(path);
    /* Saving a set over the file it is mapped from must not disturb its own views. */
    cr_assert_eq(rlx_weights_save_file(r, path), RLX_OK, "%s", rlx_last_error());
    rlx_tensor_view a, b;
    cr_assert_eq(rlx_weights_get(w, "z.f32", &a), RLX_OK);
    cr_assert_eq(rlx_weights_get(r, "z.f32", &b), RLX_OK);
    cr_expect(memcmp(a.data, b.data, a.nbytes) == 0);
    rlx_weights_destroy(r);
    r = expect_open(path);
    cr_expect_eq(rlx_weights_count(r), 5);
    rlx_weights_destroy(r);
    rlx_weights_destroy(w);
}

Test(safetensors, save_to_unwritable_place_fails_cleanly) {
    rlx_weights *w = random_set(3);
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", g_dir);
    rlx_status s = rlx_weights_save_file(w, path);
    cr_expect_eq(s, RLX_ERR_IO, "%s", rlx_status_name(s));
    cr_expect(strstr(rlx_last_error(), path) != NULL, "%s", rlx_last_error());
    rlx_weights_destroy(w);
}

// ---- robustness ------------------------------------------------------------------------------

/* Every prefix and thousands of random byte mutations of a valid file must parse or fail with
 * FORMAT/UNSUPPORTED, never crash, and name the file (ASan/UBSan builds make this bite). */
Test(safetensors, mutations_never_crash) {
    rlx_weights *w = random_set(99);
    char path[512];
    snprintf(path, sizeof path, "%s/fuzz.safetensors", g_dir);
    cr_assert_eq(rlx_weights_save_file(w, path), RLX_OK);
    rlx_weights_destroy(w);
    FILE *f = fopen(path, "rb");
    unsigned char good[4096];
    size_t len = fread(good, 1, sizeof good, f);
    fclose(f);
    cr_assert(len > 8 && len < sizeof good);

    rlx__st_tensor *t;
    size_t n, ds;
    cr_assert_eq(rlx__st_parse("fuzz", good, len, &t, &n, &ds), RLX_OK, "%s", rlx_last_error());
    rlx__st_free_tensors(t, n);
    for (size_t cut = 0; cut < len; cut++) {
        rlx_status s = rlx__st_parse("fuzz", good, cut, &t, &n, &ds);
        cr_assert_eq(s, RLX_ERR_FORMAT, "prefix of %zu bytes: %s", cut, rlx_status_name(s));
        cr_assert_null(t);
    }
    unsigned char buf[4096];
    rlxt_rng r = {2024};
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, good, len);
        int nmut = 1 + (int)(rlxt_next(&r) % 4);
        for (int m = 0; m < nmut; m++) {
            size_t at = rlxt_next(&r) % len;
            /* Bias towards the header and towards characters that keep JSON almost valid. */
            if (rlxt_next(&r) % 4) at = 8 + rlxt_next(&r) % (size_t)(len > 200 ? 200 : len - 8);
            static const char alphabet[] = "0123456789-.,:[]{}\" eE";
            buf[at] = (rlxt_next(&r) & 1) ? (unsigned char)alphabet[rlxt_next(&r) % (sizeof alphabet - 1)]
                                          : (unsigned char)rlxt_next(&r);
        }
        rlx_status s = rlx__st_parse("fuzz", buf, len, &t, &n, &ds);
        cr_assert(s == RLX_OK || s == RLX_ERR_FORMAT || s == RLX_ERR_UNSUPPORTED,
                  "iteration %d: %s", it, rlx_status_name(s));
        if (s == RLX_OK) {
            ok++;
            /* Whatever was accepted must lie inside the buffer. */
            for (size_t i = 0; i < n; i++) cr_assert(ds + t[i].end <= len);
            rlx__st_free_tensors(t, n);
        } else {
            cr_assert(strncmp(rlx_last_error(), "fuzz: ", 6) == 0, "%s", rlx_last_error());
        }
    }
    cr_log_info("mutations accepted: %d of 20000", ok);
}
