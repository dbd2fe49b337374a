/* Every device kernel, run through the simt harness, against the CPU reference on random awkward
 * shapes (bf16 and f32), with NaN-poisoned outputs and guard bytes; the same table `rlx check`
 * prints. ctest runs this suite in both thread orders. */
#include <criterion/criterion.h>

#include "tools/check.h"
#include "rlx_simt_device.h"

static void run(rlx_kdtype dt, uint64_t seed) {
    rlx_simt_device_install();
    rlx__check_report r = {0};
    rlx_status s = rlx__check_kernels(RLX_DEVICE_SIMT, dt, seed, &r);
    cr_assert_eq(s, RLX_OK, "%s", rlx_last_error());
    cr_expect_gt(r.n, 20);
    for (int i = 0; i < r.n; i++) {
        const rlx__check_row *x = &r.rows[i];
        cr_expect(x->pass, "%s %s %s (seed %llu): NMSE %.3e > bound %.1e, max err %.3e; %s", x->op, x->shape,
                  dt == RLX_K_F32 ? "f32" : "bf16", (unsigned long long)seed, x->nmse, x->bound, x->max_err, x->note);
    }
    rlx__check_report_free(&r);
}

Test(simt_kernels, bf16) { run(RLX_K_BF16, 1234); }
Test(simt_kernels, f32) { run(RLX_K_F32, 1235); }
