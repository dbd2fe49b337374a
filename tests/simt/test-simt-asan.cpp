// simt harness: out-of-bounds writes from kernel code are caught by AddressSanitizer (global
// memory, dynamic shared memory, a fiber's stack). Each runs in simt-oob-helper, a child process
// that must die with an ASan report. Only meaningful in the sanitized build (-DRLX_SANITIZE=ON);
// elsewhere the test is skipped (ctest reports it as skipped).
#include <criterion/criterion.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

#ifndef RLX_SIMT_OOB_HELPER
#error "RLX_SIMT_OOB_HELPER (path of simt-oob-helper) must be defined"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif

static void expect_asan_report(const char *mode, const char *kind) {
#ifndef SIMT_ASAN
    (void)mode;
    (void)kind;
    printf("RLX_SKIP: not a sanitized build (configure with -DRLX_SANITIZE=ON): out-of-bounds "
           "writes are only caught by AddressSanitizer\n");
    fflush(stdout);
    cr_skip_test("not a sanitized build: ASan catches the planted out-of-bounds writes only "
                 "with -DRLX_SANITIZE=ON");
#else
    const std::string cmd = std::string(RLX_SIMT_OOB_HELPER) + " " + mode + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    cr_assert(p != nullptr, "cannot run %s", cmd.c_str());
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    cr_assert(!(WIFEXITED(status) && WEXITSTATUS(status) == 0),
              "mode %s: the out-of-bounds write went unnoticed:\n%s", mode, out.c_str());
    cr_assert(out.find("ERROR: AddressSanitizer") != std::string::npos &&
                  out.find(kind) != std::string::npos,
              "mode %s: expected an ASan %s report, got:\n%s", mode, kind, out.c_str());
    cr_assert(out.find("simt_planted_oob_kernel") != std::string::npos,
              "mode %s: the report does not point into the kernel:\n%s", mode, out.c_str());
#endif
}

Test(asan, global_memory_overrun) { expect_asan_report("global", "heap-buffer-overflow"); }
Test(asan, dynamic_shared_memory_overrun) { expect_asan_report("dynsmem", "heap-buffer-overflow"); }
Test(asan, fiber_stack_overrun) { expect_asan_report("stack", "stack-buffer-overflow"); }
