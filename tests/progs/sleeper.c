/* Blocks in one kind of call, over and over, logging around each to the O_APPEND log
 * argv[2]. Modes (argv[1]):
 *   nanosleep SEC  "sleep I T" before nanosleep(&req, &rem) of SEC seconds, then
 *                  "slept I ret=R errno=E dt=NS rem=NS" (T, dt: CLOCK_MONOTONIC ns)
 *   sleep SEC      the same with glibc sleep(SEC) ("ret" is what sleep returned)
 *   read FIFO      mkfifo FIFO, open it O_RDWR, log "ready", then read() and log
 *                  "got <data>" or "read -1 errno=E"
 *   poll FIFO      the same but first poll(fd, 1, -1): "poll ret=R revents=X" or
 *                  "poll -1 errno=E", then read and log as above */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int logfd;

static void logf_(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(logfd, buf, n) != n) exit(2);
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void read_one(int fd) {
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) {
        logf_("read -1 errno=%d\n", errno);
        return;
    }
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    logf_("got %s\n", buf);
}

int main(int argc, char **argv) {
    if (argc < 4) return 1;
    const char *mode = argv[1];
    logfd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0) { perror("open"); return 1; }
    if (!strcmp(mode, "nanosleep") || !strcmp(mode, "sleep")) {
        int sec = atoi(argv[3]);
        for (int i = 0;; i++) {
            long long t0 = now_ns();
            logf_("sleep %d %lld\n", i, t0);
            long ret;
            int err = 0;
            struct timespec rem = { 0, 0 };
            if (mode[0] == 'n') {
                struct timespec req = { sec, 0 };
                ret = nanosleep(&req, &rem);
                if (ret) err = errno;
            } else {
                ret = sleep(sec);
            }
            long long t1 = now_ns();
            logf_("slept %d ret=%ld errno=%d dt=%lld rem=%lld\n", i, ret, err, t1 - t0,
                  rem.tv_sec * 1000000000LL + rem.tv_nsec);
        }
    }
    const char *fifo = argv[3];
    if (mkfifo(fifo, 0600) && errno != EEXIST) { perror("mkfifo"); return 1; }
    int fd = open(fifo, O_RDWR);
    if (fd < 0) { perror("open fifo"); return 1; }
    logf_("ready\n");
    for (;;) {
        if (!strcmp(mode, "poll")) {
            struct pollfd p = { fd, POLLIN, 0 };
            int r = poll(&p, 1, -1);
            if (r < 0) {
                logf_("poll -1 errno=%d\n", errno);
                continue;
            }
            logf_("poll ret=%d revents=%#x\n", r, p.revents);
        }
        read_one(fd);
    }
}
