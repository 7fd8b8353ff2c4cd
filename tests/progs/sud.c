/* Syscall user dispatch: argv[1] is the log. SUD is on with no exempt range; every
 * 100 ms the program sets its selector to BLOCK and calls getpid, which the kernel turns
 * into SIGSYS (the handler counts it and sets the selector back to ALLOW, so the
 * handler's return and the rest of the loop run normally), then logs "n dispatched=D
 * ran=R" (R counts getpid calls that really ran: 0 while dispatch works). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif
#define ALLOW 0
#define BLOCK 1

static volatile char selector = ALLOW;
static volatile int dispatched;

static void on_sys(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si; (void)uc;
    selector = ALLOW;
    dispatched++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0) return 2;
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_sys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0, 0, &selector) != 0) return 3;
    if (write(log, "ready\n", 6) != 6) return 4;
    int ran = 0;
    char buf[64];
    struct timespec t = { 0, 100000000 };
    for (long n = 0;; n++) {
        selector = BLOCK;
        long r = syscall(SYS_getpid);
        selector = ALLOW;
        if (r == getpid()) ran++;
        int len = snprintf(buf, sizeof buf, "%ld dispatched=%d ran=%d\n", n, dispatched, ran);
        if (write(log, buf, len) != len) return 5;
        nanosleep(&t, NULL);
    }
}
