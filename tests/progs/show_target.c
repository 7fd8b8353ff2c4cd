/* A small program with a known, stable state for `spirit show` snapshots: every signal
 * reset to the kernel's default (by the raw syscall: glibc refuses 32 and 33, and a
 * test harness may have left some ignored), then a SIGUSR1 handler (SA_RESTART|SA_SIGINFO, masking SIGTERM),
 * SIGPIPE ignored, SIGUSR2 blocked; umask 027; fd 3 the O_APPEND log argv[1] (it writes
 * "ready\n" to it), fd 4 /dev/zero; an interval timer (ITIMER_REAL, 1000 s, interval 500 s)
 * and POSIX timer 0 (CLOCK_MONOTONIC, SIGUSR1 with value 7, 1000 s, interval 2 s);
 * no_new_privs and one seccomp filter that allows everything; then it sleeps forever, a
 * second at a time. */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t hits;

static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)si; (void)uc;
    hits++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = { 0 };
    for (int s = 1; s < 65; s++) syscall(SYS_rt_sigaction, s, &dfl, NULL, 8);
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_SETMASK, &block, NULL);
    umask(027);
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log != 3) return 2;
    if (open("/dev/zero", O_RDONLY) != 4) return 3;
    struct itimerval iv = { { 500, 0 }, { 1000, 0 } };
    if (setitimer(ITIMER_REAL, &iv, NULL) != 0) return 5;
    struct sigevent ev = { 0 };
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = 7;
    timer_t t;
    struct itimerspec ts = { { 2, 0 }, { 1000, 0 } };
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0 || timer_settime(t, 0, &ts, NULL) != 0) return 6;
    struct sock_filter allow[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_fprog prog = { 1, allow };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 7;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) return 8;
    if (write(log, "ready\n", 6) != 6) return 4;
    struct timespec sec = { 1, 0 };
    for (;;) nanosleep(&sec, NULL);
}
