/* Pipes held by the process itself. Mode "self": pipe A (read end non-blocking,
 * capacity 1 MiB) holds 100000 patterned bytes in flight; its write end is dup'ed;
 * pipe B (a self-pipe) holds "wake\n". After the restore ("go") the program reads
 * everything back and checks it byte for byte, checks the flags and capacity, and that
 * the dup'ed write end still feeds the read end. Mode "half": the write end of a pipe
 * is held only by a process outside the tree (a grandchild that was orphaned, "holder
 * PID"), so the process holds only the read end (the checkpoint must refuse).
 * Mode "stale": an epoll set watches the read end as fd 3, which is then moved to fd
 * 20 (dup2 + close): the set's entry names a number that is closed (refused too). */
#include "files_common.h"
#include <sys/epoll.h>
#include <sys/wait.h>

#define N 100000

static unsigned char pat(int i) { return (unsigned char)(i * 7 + i / 251); }

int main(int argc, char **argv) {
    int a[2], b[2];
    check(pipe(a) == 0, "pipe a");
    if (argc > 1 && strcmp(argv[1], "half") == 0) {
        /* The write end stays open in a grandchild that leaves the tree (its parent
         * exits: it is adopted by the subreaper). */
        pid_t c = fork();
        check(c >= 0, "fork");
        if (c == 0) {
            if (fork() == 0) {
                close(a[0]);
                say("holder %d\n", getpid());
                for (;;) pause();
            }
            _exit(0);
        }
        check(waitpid(c, NULL, 0) == c, "waitpid");
        close(a[1]);
        say("ready\n");
        for (;;) pause();
    }
    if (argc > 1 && strcmp(argv[1], "stale") == 0) {
        int ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
        check(epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &ev) == 0, "epoll add");
        check(dup2(a[0], 20) == 20, "dup2");
        close(a[0]);
        say("ready\n");
        for (;;) pause();
    }
    check(pipe2(b, O_CLOEXEC) == 0, "pipe b");
    check(fcntl(a[1], F_SETPIPE_SZ, 1 << 20) >= (1 << 20), "F_SETPIPE_SZ");
    static unsigned char buf[N];
    for (int i = 0; i < N; i++) buf[i] = pat(i);
    check(write(a[1], buf, N) == N, "fill a");
    check(write(b[1], "wake\n", 5) == 5, "fill b");
    check(fcntl(a[0], F_SETFL, O_NONBLOCK) == 0, "nonblock");
    int wdup = dup(a[1]);
    say("fds a=%d,%d b=%d,%d wdup=%d\n", a[0], a[1], b[0], b[1], wdup);
    say("ready\n");
    wait_for_go();
    static unsigned char got[N + 10];
    ssize_t n = read(a[0], got, sizeof got);
    check(n == N, "read a gave %zd", n);
    for (int i = 0; i < N; i++) check(got[i] == pat(i), "byte %d differs", i);
    errno = 0;
    check(read(a[0], got, 1) == -1 && errno == EAGAIN, "a is empty and non-blocking");
    say("pipe a: %d bytes in flight intact, nonblock=%d, capacity=%d\n", N,
        !!(fcntl(a[0], F_GETFL) & O_NONBLOCK), fcntl(a[0], F_GETPIPE_SZ));
    char w[8] = {0};
    check(read(b[0], w, 5) == 5, "read b");
    say("pipe b: %s", w);
    say("cloexec b=%d,%d\n", fcntl(b[0], F_GETFD), fcntl(b[1], F_GETFD));
    check(write(wdup, "via dup", 7) == 7, "write dup");
    check(read(a[0], w, 7) == 7, "read back");
    w[7] = 0;
    say("dup write end feeds: %s\n", w);
    say("done\n");
    return 0;
}
