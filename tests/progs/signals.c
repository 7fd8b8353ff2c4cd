/* Signal state for checkpoint tests; argv[1] is the log.
 * SIGUSR1: SA_ONSTACK|SA_SIGINFO|SA_RESTART handler on a 64 KiB altstack, logs
 *   "usr1 onstack=1" when it runs on it.
 * SIGUSR2: SA_RESETHAND|SA_NODEFER handler, logs "usr2".
 * SIGRTMIN+3 is blocked in the main thread, with two values queued before "ready"
 *   (31337 then 31338, by sigqueue); SIGRTMIN+4 is blocked in the worker thread (named
 *   "sig-worker"), with 99 queued to that thread (pthread_sigqueue).
 * SIGHUP makes both threads unblock them; their handler logs "rt S value=V code=C
 *   pid_ok=P thread_ok=T". The main thread logs "tick" every 100 ms. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int log_fd;
static char altstack[65536];
static volatile sig_atomic_t unblock;
static pid_t main_tid, worker_tid, mypid;

static void logs(const char *s) { if (write(log_fd, s, strlen(s))) {} }

static void on_usr1(int s, siginfo_t *si, void *uc) {
    (void)s; (void)si; (void)uc;
    char here;
    int on = &here >= altstack && &here < altstack + sizeof altstack;
    logs(on ? "usr1 onstack=1\n" : "usr1 onstack=0\n");
}
static void on_usr2(int s) { (void)s; logs("usr2\n"); }
static void on_hup(int s) { (void)s; unblock = 1; }
static void on_rt(int s, siginfo_t *si, void *uc) {
    (void)uc;
    char buf[128];
    pid_t want = s == SIGRTMIN + 3 ? main_tid : worker_tid;
    int len = snprintf(buf, sizeof buf, "rt %d value=%d code=%d pid_ok=%d thread_ok=%d\n", s - SIGRTMIN,
                       si->si_value.sival_int, si->si_code, si->si_pid == mypid, gettid() == want);
    if (write(log_fd, buf, len)) {}
}

static void *worker(void *a) {
    (void)a;
    pthread_setname_np(pthread_self(), "sig-worker");
    sigset_t b;
    sigemptyset(&b);
    sigaddset(&b, SIGRTMIN + 4);
    sigaddset(&b, SIGHUP);
    sigaddset(&b, SIGUSR1);
    sigaddset(&b, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &b, NULL);
    worker_tid = gettid();
    struct timespec t = { 0, 20000000 };
    while (!unblock) nanosleep(&t, NULL);
    sigemptyset(&b);
    sigaddset(&b, SIGRTMIN + 4);
    pthread_sigmask(SIG_UNBLOCK, &b, NULL);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    log_fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0) return 2;
    main_tid = gettid();
    mypid = getpid();
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) return 3;
    struct sigaction sa = { 0 };
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_ONSTACK | SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigaction(SIGUSR2, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN + 3, &sa, NULL);
    sigaction(SIGRTMIN + 4, &sa, NULL);
    sigset_t b;
    sigemptyset(&b);
    sigaddset(&b, SIGRTMIN + 3);
    sigaddset(&b, SIGRTMIN + 4);
    sigprocmask(SIG_BLOCK, &b, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0) return 4;
    struct timespec t = { 0, 20000000 };
    while (!worker_tid) nanosleep(&t, NULL);
    union sigval v1 = { .sival_int = 31337 }, v2 = { .sival_int = 31338 }, v3 = { .sival_int = 99 };
    if (sigqueue(mypid, SIGRTMIN + 3, v1) != 0 || sigqueue(mypid, SIGRTMIN + 3, v2) != 0) return 5;
    if (pthread_sigqueue(th, SIGRTMIN + 4, v3) != 0) return 6;
    logs("ready\n");
    struct timespec tick = { 0, 100000000 };
    int done = 0;
    for (;;) {
        if (unblock && !done) {
            done = 1;
            sigemptyset(&b);
            sigaddset(&b, SIGRTMIN + 3);
            sigprocmask(SIG_UNBLOCK, &b, NULL);
        }
        logs("tick\n");
        nanosleep(&tick, NULL);
    }
}
