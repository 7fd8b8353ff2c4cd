/* Holds AVX and x87 state in registers across a long asm loop and checks it after.
 *
 * Each round loads ymm0-15 with a pattern, the whole x87 stack with known extended
 * values, sets a non-default FCW (round toward zero) and MXCSR (round toward zero,
 * flush to zero), then spins `iters` times doing ymm0 += ymm1 (64-bit lanes) and
 * st(0) += st(1), so the state is live and changing while a checkpoint lands. After
 * the loop every register is stored and compared with what the arithmetic must give;
 * the round is logged as "ok N" or "BAD N what" to the O_APPEND log argv[1]. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FCW 0x0F7F     /* all exceptions masked, 64-bit precision, round toward zero */
#define MXCSR 0xFF80   /* all exceptions masked, round toward zero, flush to zero */

struct regs {
    uint64_t y[16][4];          /* offset 0, 512 bytes */
    long double x[8];           /* offset 512, 16 bytes each */
    uint32_t mxcsr;             /* offset 640 */
    uint16_t fcw;               /* offset 644 */
};

static int logfd;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logf_(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(logfd, buf, n) != n) exit(2);
}

static void round_asm(struct regs *in, struct regs *out, uint64_t iters) {
    static const uint16_t def_fcw = 0x037F;
    static const uint32_t def_mxcsr = 0x1F80;
    __asm__ volatile(
        "vmovdqu 0(%[in]), %%ymm0\n\t"
        "vmovdqu 32(%[in]), %%ymm1\n\t"
        "vmovdqu 64(%[in]), %%ymm2\n\t"
        "vmovdqu 96(%[in]), %%ymm3\n\t"
        "vmovdqu 128(%[in]), %%ymm4\n\t"
        "vmovdqu 160(%[in]), %%ymm5\n\t"
        "vmovdqu 192(%[in]), %%ymm6\n\t"
        "vmovdqu 224(%[in]), %%ymm7\n\t"
        "vmovdqu 256(%[in]), %%ymm8\n\t"
        "vmovdqu 288(%[in]), %%ymm9\n\t"
        "vmovdqu 320(%[in]), %%ymm10\n\t"
        "vmovdqu 352(%[in]), %%ymm11\n\t"
        "vmovdqu 384(%[in]), %%ymm12\n\t"
        "vmovdqu 416(%[in]), %%ymm13\n\t"
        "vmovdqu 448(%[in]), %%ymm14\n\t"
        "vmovdqu 480(%[in]), %%ymm15\n\t"
        "fninit\n\t"
        "fldt 512(%[in])\n\t"
        "fldt 528(%[in])\n\t"
        "fldt 544(%[in])\n\t"
        "fldt 560(%[in])\n\t"
        "fldt 576(%[in])\n\t"
        "fldt 592(%[in])\n\t"
        "fldt 608(%[in])\n\t"
        "fldt 624(%[in])\n\t"
        "fldcw 644(%[in])\n\t"
        "ldmxcsr 640(%[in])\n\t"
        "1:\n\t"
        "vpaddq %%ymm1, %%ymm0, %%ymm0\n\t"
        "fadd %%st(1), %%st\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "fnstcw 644(%[out])\n\t"
        "stmxcsr 640(%[out])\n\t"
        "vmovdqu %%ymm0, 0(%[out])\n\t"
        "vmovdqu %%ymm1, 32(%[out])\n\t"
        "vmovdqu %%ymm2, 64(%[out])\n\t"
        "vmovdqu %%ymm3, 96(%[out])\n\t"
        "vmovdqu %%ymm4, 128(%[out])\n\t"
        "vmovdqu %%ymm5, 160(%[out])\n\t"
        "vmovdqu %%ymm6, 192(%[out])\n\t"
        "vmovdqu %%ymm7, 224(%[out])\n\t"
        "vmovdqu %%ymm8, 256(%[out])\n\t"
        "vmovdqu %%ymm9, 288(%[out])\n\t"
        "vmovdqu %%ymm10, 320(%[out])\n\t"
        "vmovdqu %%ymm11, 352(%[out])\n\t"
        "vmovdqu %%ymm12, 384(%[out])\n\t"
        "vmovdqu %%ymm13, 416(%[out])\n\t"
        "vmovdqu %%ymm14, 448(%[out])\n\t"
        "vmovdqu %%ymm15, 480(%[out])\n\t"
        "fstpt 512(%[out])\n\t"
        "fstpt 528(%[out])\n\t"
        "fstpt 544(%[out])\n\t"
        "fstpt 560(%[out])\n\t"
        "fstpt 576(%[out])\n\t"
        "fstpt 592(%[out])\n\t"
        "fstpt 608(%[out])\n\t"
        "fstpt 624(%[out])\n\t"
        "fldcw %[dfcw]\n\t"
        "ldmxcsr %[dmx]\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(iters)
        : [in] "r"(in), [out] "r"(out), [dfcw] "m"(def_fcw), [dmx] "m"(def_mxcsr)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
          "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
}

int main(int argc, char **argv) {
    logfd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0) { perror("open"); return 1; }
    uint64_t iters = argc > 2 ? strtoull(argv[2], NULL, 0) : 20000000;
    static struct regs in __attribute__((aligned(64))), out __attribute__((aligned(64)));
    for (unsigned long round = 0;; round++) {
        memset(&in, 0, sizeof in);
        memset(&out, 0xA5, sizeof out);
        for (int r = 0; r < 16; r++)
            for (int l = 0; l < 4; l++)
                in.y[r][l] = 0x0123456789abcdefULL * (uint64_t)(r * 4 + l + 1) ^ (round << 40);
        in.y[1][0] = 1; in.y[1][1] = 3; in.y[1][2] = 0x100000001ULL; in.y[1][3] = -7ULL;
        /* x[0] loaded first (deepest); x[6] ends as st(1), x[7] as st(0). */
        for (int i = 0; i < 6; i++) in.x[i] = 1.0L / (3.0L + i + round);
        in.x[6] = 1.0L;
        in.x[7] = 1000.0L + round;
        in.fcw = FCW;
        in.mxcsr = MXCSR;
        round_asm(&in, &out, iters);

        char bad[256] = "";
        for (int r = 0; r < 16 && !bad[0]; r++)
            for (int l = 0; l < 4; l++) {
                uint64_t want = in.y[r][l];
                if (r == 0) want += iters * in.y[1][l];
                if (out.y[r][l] != want) {
                    snprintf(bad, sizeof bad, "ymm%d lane %d = %#llx want %#llx", r, l,
                             (unsigned long long)out.y[r][l], (unsigned long long)want);
                    break;
                }
            }
        /* fstpt stores st(0) first: out.x[i] = st(i) = in.x[7 - i], st(0) advanced. */
        for (int i = 0; i < 8 && !bad[0]; i++) {
            long double want = in.x[7 - i];
            if (i == 0) want = in.x[7] + (long double)iters;
            if (memcmp(&out.x[i], &want, 10) != 0)
                snprintf(bad, sizeof bad, "st(%d) = %.21Lg want %.21Lg", i, out.x[i], want);
        }
        if (!bad[0] && out.fcw != FCW)
            snprintf(bad, sizeof bad, "fcw = %#x want %#x", out.fcw, FCW);
        if (!bad[0] && out.mxcsr != MXCSR)
            snprintf(bad, sizeof bad, "mxcsr = %#x want %#x", out.mxcsr, MXCSR);
        if (bad[0])
            logf_("BAD %lu %s\n", round, bad);
        else
            logf_("ok %lu\n", round);
    }
}
