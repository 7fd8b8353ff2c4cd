/* A sandboxed program: it drops capabilities (CAP_NET_RAW and CAP_SYS_BOOT from every
 * set, the bounding set included; CAP_NET_BIND_SERVICE raised in the ambient set), sets
 * no_new_privs, and installs two seccomp filters in every thread: getppid returns
 * ENOTSUP (filter 0), uname kills the process (filter 1, with SECCOMP_FILTER_FLAG_LOG).
 * A second thread, named "sb-worker", adds a filter of its own (getuid returns EDOM).
 * argv[1] is the log: "ready", then every 100 ms "N ppid=R errno=E uid_errno=F"
 * (getppid's result from main, getuid's from the worker). SIGUSR1 makes the main thread
 * call uname (and die of SIGSYS, if it is still filtered).
 * With argv[2] == "nnp-only" it only sets no_new_privs and drops the capabilities.
 * With argv[2] == "nobody" (started as root) it becomes uid/gid 65534 keeping
 * CAP_NET_BIND_SERVICE and CAP_NET_RAW (permitted, effective), CAP_NET_BIND_SERVICE
 * inheritable and ambient, CAP_SYS_BOOT dropped from the bounding set; no filters. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t do_uname;
static volatile int worker_errno;
static int filters = 1;

static void on_usr1(int s) { (void)s; do_uname = 1; }

static int install(int nr, unsigned int action, unsigned int flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof f / sizeof f[0], f };
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void *worker(void *a) {
    (void)a;
    pthread_setname_np(pthread_self(), "sb-worker");
    if (filters && install(SYS_getuid, SECCOMP_RET_ERRNO | EDOM, 0) != 0) return NULL;
    for (;;) {
        errno = 0;
        long r = syscall(SYS_getuid);
        worker_errno = r < 0 ? errno : 0;
        struct timespec t = { 0, 50000000 };
        nanosleep(&t, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    filters = !(argc > 2 && strcmp(argv[2], "nnp-only") == 0);
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0) return 2;
    signal(SIGUSR1, on_usr1);
    char buf[128];
    struct timespec t = { 0, 100000000 };
    if (argc > 2 && strcmp(argv[2], "nobody") == 0) {
        filters = 0;
        if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) != 0) return 20;
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return 21;
        if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0) return 22;
        if (setresuid(65534, 65534, 65534) != 0) return 23;
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = { { 0 } };
        unsigned keep = (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_NET_RAW);
        d[0].effective = d[0].permitted = keep;
        d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
        if (syscall(SYS_capset, &h, d) != 0) return 24;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0) return 25;
        goto run;
    }
    unsigned long drop[] = { CAP_NET_RAW, CAP_SYS_BOOT };
    for (int i = 0; i < 2; i++)
        if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0) != 0) return 3;
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return 4;
    for (int i = 0; i < 2; i++) {
        d[0].effective &= ~(1u << drop[i]);
        d[0].permitted &= ~(1u << drop[i]);
        d[0].inheritable &= ~(1u << drop[i]);
    }
    d[0].inheritable |= 1u << CAP_NET_BIND_SERVICE;
    if (syscall(SYS_capset, &h, d) != 0) return 5;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0) return 6;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 7;
    if (filters) {
        if (install(SYS_getppid, SECCOMP_RET_ERRNO | ENOTSUP, 0) != 0) return 8;
        if (install(SYS_uname, SECCOMP_RET_KILL_PROCESS, SECCOMP_FILTER_FLAG_LOG) != 0) return 9;
    }
run:;
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0) return 10;
    nanosleep(&t, NULL);
    if (write(log, "ready\n", 6) != 6) return 11;
    for (long n = 0;; n++) {
        if (do_uname) {
            struct utsname u;
            uname(&u);
            if (write(log, "uname returned\n", 15) != 15) return 12;
            do_uname = 0;
        }
        errno = 0;
        long r = syscall(SYS_getppid);
        int len = snprintf(buf, sizeof buf, "%ld ppid=%ld errno=%d uid_errno=%d\n", n, r,
                           r < 0 ? errno : 0, worker_errno);
        if (write(log, buf, len) != len) return 13;
        nanosleep(&t, NULL);
    }
}
