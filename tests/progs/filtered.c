/* Sets no_new_privs and one seccomp filter (getppid returns ENOTSUP), then logs a line
 * to argv[1] every 50 ms: "ready" first, then "N ppid=R". Runs unprivileged. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0) return 2;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTSUP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { 4, f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 3;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return 4;
    if (write(log, "ready\n", 6) != 6) return 5;
    char buf[64];
    struct timespec t = { 0, 50000000 };
    for (long n = 0;; n++) {
        int len = snprintf(buf, sizeof buf, "%ld ppid=%ld\n", n, (long)syscall(SYS_getppid));
        if (write(log, buf, len) != len) return 6;
        nanosleep(&t, NULL);
    }
}
