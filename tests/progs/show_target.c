/* A small program with a known, stable state for `spirit show` snapshots: every signal
 * reset to the kernel's default (by the raw syscall: glibc refuses 32 and 33, and a
 * test harness may have left some ignored), then a SIGUSR1 handler (SA_RESTART|SA_SIGINFO, masking SIGTERM),
 * SIGPIPE ignored, SIGUSR2 blocked; umask 027; fd 3 the O_APPEND log argv[1] (it writes
 * "ready\n" to it), fd 4 /dev/zero; then it sleeps forever, a second at a time. */
#include <fcntl.h>
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
    if (write(log, "ready\n", 6) != 6) return 4;
    struct timespec sec = { 1, 0 };
    for (;;) nanosleep(&sec, NULL);
}
