/* Timers for checkpoint tests. argv[1]: the log; argv[2]: the mode.
 * "periodic": ITIMER_REAL every 100 ms (SIGALRM), ITIMER_PROF armed at 1000 s with a
 *   500 s interval, and POSIX timers 1 and 2 (timer 0 is created and deleted first, so
 *   the ids are not the ones a fresh process would get): timer 1 CLOCK_MONOTONIC,
 *   SIGEV_SIGNAL SIGRTMIN+1 value 4242, every 100 ms; timer 2 SIGEV_THREAD_ID to the
 *   worker thread, SIGRTMIN+2 value 77, every 150 ms. Every 100 ms the main thread logs
 *   "real=R p1=A p2=B bad=X id1=I id2=J gettime=G" (counts of expiries; bad counts
 *   signals with a wrong value, timer id or thread).
 * "alarm": alarm(3); SIGALRM logs "alarm"; the main thread logs "tick" every 100 ms.
 * "blocked": ITIMER_REAL every 50 ms with SIGALRM blocked (so it is pending, and the
 *   kernel re-arms the timer only once it is taken); SIGHUP unblocks it; the main thread
 *   logs "real=R" every 100 ms. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd;
static volatile int real, p1, p2, bad;
static volatile pid_t worker_tid;
static __thread int is_worker; /* survives a restore with new tids, unlike worker_tid */
static timer_t t1, t2;

static void on_alrm(int s) { (void)s; real++; }
static volatile sig_atomic_t hup;
static void on_hup(int s) { (void)s; hup = 1; }
static void on_alarm_once(int s) { (void)s; if (write(log_fd, "alarm\n", 6)) {} }

static void on_rt(int s, siginfo_t *si, void *uc) {
    (void)uc;
    if (s == SIGRTMIN + 1) {
        if (si->si_value.sival_int == 4242 && si->si_timerid == (int)(intptr_t)t1 && si->si_code == SI_TIMER) p1++;
        else bad++;
    } else {
        if (si->si_value.sival_int == 77 && is_worker && si->si_timerid == (int)(intptr_t)t2) p2++;
        else bad++;
    }
}

static void *worker(void *a) {
    (void)a;
    is_worker = 1;
    worker_tid = gettid();
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    log_fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0) return 2;
    struct timespec tick = { 0, 100000000 };
    if (strcmp(argv[2], "alarm") == 0) {
        signal(SIGALRM, on_alarm_once);
        alarm(3);
        if (write(log_fd, "ready\n", 6) != 6) return 3;
        for (;;) {
            if (write(log_fd, "tick\n", 5) != 5) return 4;
            nanosleep(&tick, NULL);
        }
    }
    struct sigaction sa = { 0 };
    sa.sa_handler = on_alrm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    if (strcmp(argv[2], "blocked") == 0) {
        signal(SIGHUP, on_hup);
        sigset_t b;
        sigemptyset(&b);
        sigaddset(&b, SIGALRM);
        sigprocmask(SIG_BLOCK, &b, NULL);
        struct itimerval v = { { 0, 50000 }, { 0, 50000 } };
        if (setitimer(ITIMER_REAL, &v, NULL) != 0) return 15;
        if (write(log_fd, "ready\n", 6) != 6) return 16;
        for (;;) {
            if (hup) sigprocmask(SIG_UNBLOCK, &b, NULL);
            char buf[32];
            int len = snprintf(buf, sizeof buf, "real=%d\n", real);
            if (write(log_fd, buf, len) != len) return 17;
            nanosleep(&tick, NULL);
        }
    }
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sigaction(SIGRTMIN + 2, &sa, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) != 0) return 5;
    while (!worker_tid) nanosleep(&tick, NULL);
    struct itimerval iv = { { 0, 100000 }, { 0, 100000 } };
    if (setitimer(ITIMER_REAL, &iv, NULL) != 0) return 6;
    struct itimerval prof = { { 500, 0 }, { 1000, 0 } };
    if (setitimer(ITIMER_PROF, &prof, NULL) != 0) return 7;
    timer_t t0;
    struct sigevent ev = { 0 };
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 1;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t0) != 0) return 8;
    ev.sigev_value.sival_int = 4242;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t1) != 0) return 9;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGRTMIN + 2;
    ev.sigev_value.sival_int = 77;
    ev._sigev_un._tid = worker_tid;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t2) != 0) return 10;
    if (timer_delete(t0) != 0) return 11;
    struct itimerspec s1 = { { 0, 100000000 }, { 0, 100000000 } };
    struct itimerspec s2 = { { 0, 150000000 }, { 0, 150000000 } };
    if (timer_settime(t1, 0, &s1, NULL) != 0 || timer_settime(t2, 0, &s2, NULL) != 0) return 12;
    if (write(log_fd, "ready\n", 6) != 6) return 13;
    char buf[160];
    for (;;) {
        struct itimerspec cur;
        int gt = timer_gettime(t1, &cur) == 0 && timer_gettime(t2, &cur) == 0;
        int len = snprintf(buf, sizeof buf, "real=%d p1=%d p2=%d bad=%d id1=%d id2=%d gettime=%d\n",
                           real, p1, p2, bad, (int)(intptr_t)t1, (int)(intptr_t)t2, gt);
        if (write(log_fd, buf, len) != len) return 14;
        struct timespec rem = tick;
        while (nanosleep(&rem, &rem) != 0) {}
    }
}
