/* Anonymous-inode descriptors. Before the checkpoint: a memfd "spirit-test" holding
 * "memfd content" sealed against shrinking and growing; an eventfd (count 5, semaphore,
 * non-blocking); a periodic timerfd (CLOCK_MONOTONIC, 30 ms); a signalfd for SIGUSR1
 * (blocked); a pipe with "p" in flight; an epoll set over the eventfd (data 0xE1) and
 * the pipe (data 0xB1, edge-triggered); an inotify instance whose only watch is wd 2
 * on ./watched (wd 1, on ./other, was removed). After the restore ("go") each is used
 * and what it gives is reported. */
#include "files_common.h"
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>

int main(void) {
    mkdir("watched", 0755);
    mkdir("other", 0755);
    int mfd = memfd_create("spirit-test", MFD_ALLOW_SEALING);
    check(mfd >= 0, "memfd_create");
    check(write(mfd, "memfd content", 13) == 13, "write memfd");
    check(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "seal");
    check(lseek(mfd, 6, SEEK_SET) == 6, "seek memfd");
    int efd = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
    check(efd >= 0, "eventfd");
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {{0, 30000000}, {0, 30000000}};
    check(timerfd_settime(tfd, 0, &its, NULL) == 0, "timerfd_settime");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    check(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "block");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    check(sfd >= 0, "signalfd");
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(write(p[1], "p", 1) == 1, "write pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xE1};
    check(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) == 0, "epoll add efd");
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 0xB1;
    check(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "epoll add pipe");
    int in = inotify_init1(IN_NONBLOCK);
    int wd1 = inotify_add_watch(in, "other", IN_CREATE);
    int wd2 = inotify_add_watch(in, "watched", IN_CREATE | IN_DELETE);
    check(wd1 == 1 && wd2 == 2, "wds %d %d", wd1, wd2);
    check(inotify_rm_watch(in, wd1) == 0, "rm watch");
    char evbuf[4096];
    while (read(in, evbuf, sizeof evbuf) > 0) {} /* the IN_IGNORED of wd 1 */
    say("ready\n");
    wait_for_go();

    /* memfd */
    char m[32] = {0};
    check(read(mfd, m, sizeof m - 1) == 7, "read memfd at offset");
    char link[128] = {0};
    snprintf(evbuf, 64, "/proc/self/fd/%d", mfd);
    check(readlink(evbuf, link, sizeof link - 1) > 0, "readlink memfd");
    int shrink = ftruncate(mfd, 2);
    say("memfd: %s rest=%s seals=%d shrink=%d\n", link, m, fcntl(mfd, F_GET_SEALS), shrink);

    /* epoll before anything is drained */
    struct epoll_event got[4];
    int n = epoll_wait(ep, got, 4, 1000);
    unsigned long long seen = 0;
    for (int i = 0; i < n; i++) seen |= got[i].data.u64 == 0xE1 ? 1 : got[i].data.u64 == 0xB1 ? 2 : 4;
    say("epoll: %d ready, eventfd=%d pipe=%d other=%d\n", n, !!(seen & 1), !!(seen & 2), !!(seen & 4));

    /* eventfd: a semaphore with count 5, non-blocking */
    int reads = 0;
    unsigned long long v;
    while (read(efd, &v, 8) == 8) { check(v == 1, "semaphore read %llu", v); reads++; }
    say("eventfd: %d reads then errno=%s\n", reads, errno == EAGAIN ? "EAGAIN" : "other");

    /* timerfd: still periodic at 30 ms */
    unsigned long long ticks = 0;
    check(read(tfd, &ticks, 8) == 8 && ticks >= 1, "timerfd read");
    struct itimerspec cur;
    timerfd_gettime(tfd, &cur);
    say("timerfd: ticks>=1 interval_ns=%ld\n", cur.it_interval.tv_nsec);

    /* signalfd */
    kill(getpid(), SIGUSR1);
    struct signalfd_siginfo si;
    check(read(sfd, &si, sizeof si) == sizeof si, "read signalfd");
    say("signalfd: signo=%u\n", si.ssi_signo);

    /* inotify: the watch keeps wd 2 */
    close(open("watched/newfile", O_CREAT | O_WRONLY, 0644));
    struct timespec ts = {0, 5000000};
    int len = -1;
    for (int i = 0; i < 400 && len <= 0; i++) { len = read(in, evbuf, sizeof evbuf); if (len <= 0) nanosleep(&ts, NULL); }
    check(len > 0, "inotify read");
    struct inotify_event *ie = (struct inotify_event *)evbuf;
    say("inotify: wd=%d mask=%x name=%s\n", ie->wd, ie->mask, ie->len ? ie->name : "");
    say("done\n");
    return 0;
}
