/* Unix sockets across a checkpoint. Pids go to ./pids ("PARENT CHILD..."), "ready" to
 * stdout; after the restore the test creates ./go and each process checks what it
 * finds, prints "<who> ok" or a FAIL line, and the processes talk on to show the
 * connections still work. Modes:
 *   pair      — parent and child share a datagram pair (3 datagrams queued for the
 *               child: boundaries checked), a stream pair (the child's "hello" queued
 *               for the parent; the parent's "F" queued for the child with a file
 *               descriptor in flight, data.txt read up to offset 3), a seqpacket pair
 *               (2 packets queued for the parent) and an abstract datagram name the
 *               parent is bound to (the child connected to it, one datagram queued,
 *               then one more sent from the child's own abstract name: the sender's
 *               name is checked),
 *               and a stream pair the child shut for writing after "bye".
 *   server    — the parent listens on ./srv.sock (mode 0600); child A is accepted,
 *               with "req-A" queued for the parent and "resp-A" for A; child B has
 *               connected but is not accepted yet.
 *   external PATH — a datagram socket connected to PATH (outside the tree), one
 *               datagram sent before the checkpoint, one after.
 *   solo      — one process holding a unix stream socketpair (for `spirit show`).
 *   inflight  — one process with a pipe's read end in flight on a socketpair (refused).
 *   extfork PATH — the parent listens on ./own.sock; its child holds a datagram
 *               socket connected to PATH (outside the tree).
 *   passsock  — one process: a datagram pair x, "via-x" queued on x[1], and x[1] in
 *               flight on a stream pair c (then closed): after the restore it
 *               receives x[1] and reads "via-x", and the pair still works.
 *   prefork   — the parent listens on ./pf.sock and holds a NETLINK_ROUTE socket
 *               joined to RTMGRP_LINK; two workers share the listener, each accepting
 *               clients and answering "wN:<what the client sent>". */
#include "files_common.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <linux/netlink.h>

static void sync_wait(int p[2]) { char c; close(p[1]); check(read(p[0], &c, 1) == 1, "sync"); close(p[0]); }
static void sync_post(int p[2]) { close(p[0]); check(write(p[1], "x", 1) == 1, "sync"); close(p[1]); }

static void expect(int fd, const char *want, const char *what) {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    check(n == (ssize_t)strlen(want), "%s: got %zd bytes, want %zu", what, n, strlen(want));
    buf[n] = 0;
    check(strcmp(buf, want) == 0, "%s: got %s want %s", what, buf, want);
}

static void send_fd(int s, int fd) {
    char c = 'F';
    struct iovec iov = {&c, 1};
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr h; } u;
    struct msghdr m = {0};
    m.msg_iov = &iov; m.msg_iovlen = 1;
    m.msg_control = u.b; m.msg_controllen = sizeof u.b;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    check(sendmsg(s, &m, 0) == 1, "sendmsg fd");
}

static int recv_fd(int s) {
    char c = 0;
    struct iovec iov = {&c, 1};
    /* Room for the credentials too (SO_PASSCRED is on). */
    union { char b[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))]; struct cmsghdr h; } u;
    struct msghdr m = {0};
    m.msg_iov = &iov; m.msg_iovlen = 1;
    m.msg_control = u.b; m.msg_controllen = sizeof u.b;
    check(recvmsg(s, &m, 0) == 1 && c == 'F', "recvmsg fd");
    int fd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    check(fd >= 0, "no fd in flight came");
    return fd;
}

static socklen_t abstract_addr(struct sockaddr_un *a, int pid) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "spirit-test-%d", pid);
    return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

static int pair_mode(void) {
    int d[2], s[2], q[2], h[2], sy[2];
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, h) == 0, "half-closed pair");
    check(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0, "dgram pair");
    check(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "stream pair");
    check(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q) == 0, "seqpacket pair");
    int one = 1;
    check(setsockopt(s[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0, "passcred");
    struct sockaddr_un ab;
    socklen_t ablen = abstract_addr(&ab, getpid());
    int abs = socket(AF_UNIX, SOCK_DGRAM, 0);
    check(bind(abs, (struct sockaddr *)&ab, ablen) == 0, "bind abstract");
    check(pipe(sy) == 0, "pipe");
    pid_t c = fork();
    if (c == 0) {
        close(d[0]); close(s[0]); close(q[0]); close(h[0]); close(abs);
        check(write(h[1], "bye", 3) == 3 && shutdown(h[1], SHUT_WR) == 0, "half close");
        int ac = socket(AF_UNIX, SOCK_DGRAM, 0);
        check(connect(ac, (struct sockaddr *)&ab, ablen) == 0, "connect abstract");
        check(send(ac, "abs-1", 5, 0) == 5, "send abs");
        struct sockaddr_un cn_addr;
        socklen_t cn_len = abstract_addr(&cn_addr, getppid());
        cn_addr.sun_path[cn_len - offsetof(struct sockaddr_un, sun_path)] = 'c';
        cn_len++;
        int cn = socket(AF_UNIX, SOCK_DGRAM, 0);
        check(bind(cn, (struct sockaddr *)&cn_addr, cn_len) == 0, "bind named sender");
        check(sendto(cn, "named-1", 7, 0, (struct sockaddr *)&ab, ablen) == 7, "sendto abs");
        check(write(s[1], "hello", 5) == 5, "stream");
        check(send(q[1], "pkt1", 4, 0) == 4 && send(q[1], "pkt22", 5, 0) == 5, "seqpacket");
        sync_post(sy);
        wait_for_go();
        expect(d[1], "one", "datagram 1");
        expect(d[1], "two!", "datagram 2");
        expect(d[1], "three", "datagram 3");
        int f = recv_fd(s[1]);
        char buf[16] = {0};
        check(read(f, buf, sizeof buf) == 7 && strcmp(buf, "3456789") == 0, "file in flight read %s", buf);
        int pc = 0; socklen_t l = sizeof pc;
        check(getsockopt(s[1], SOL_SOCKET, SO_PASSCRED, &pc, &l) == 0 && pc == 1, "SO_PASSCRED kept");
        errno = 0;
        check(send(h[1], "x", 1, MSG_NOSIGNAL) == -1 && errno == EPIPE, "still shut for writing");
        check(send(d[1], "after", 5, 0) == 5, "send after");
        check(send(ac, "abs-2", 5, 0) == 5, "send abs after");
        check(write(s[1], "more", 4) == 4, "stream after");
        say("child ok\n");
        _exit(0);
    }
    close(d[1]); close(s[1]); close(q[1]); close(h[1]);
    sync_wait(sy);
    check(send(d[0], "one", 3, 0) == 3 && send(d[0], "two!", 4, 0) == 4 && send(d[0], "three", 5, 0) == 5, "dgrams");
    int f = open("data.txt", O_RDONLY);
    check(f >= 0, "open data.txt");
    char b3[3];
    check(read(f, b3, 3) == 3, "read 3");
    send_fd(s[0], f);
    close(f);
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d %d\n", getpid(), c);
    fclose(pf);
    say("ready\n");
    wait_for_go();
    char buf[16] = {0};
    check(read(s[0], buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "stream queued for parent");
    expect(q[0], "pkt1", "packet 1");
    expect(q[0], "pkt22", "packet 2");
    expect(abs, "abs-1", "abstract 1");
    struct sockaddr_un from = {0};
    socklen_t fl = sizeof from;
    char nb[16] = {0};
    check(recvfrom(abs, nb, sizeof nb, 0, (struct sockaddr *)&from, &fl) == 7 && memcmp(nb, "named-1", 7) == 0, "named datagram");
    char want[64];
    int wl = snprintf(want, sizeof want, "spirit-test-%dc", getpid());
    check(fl == offsetof(struct sockaddr_un, sun_path) + 1 + wl && from.sun_path[0] == 0 &&
          memcmp(from.sun_path + 1, want, wl) == 0, "sender name kept (%d bytes: %.*s)", (int)fl, (int)(fl > 3 ? fl - 3 : 0), from.sun_path + 1);
    expect(d[0], "after", "datagram after");
    expect(abs, "abs-2", "abstract 2");
    check(read(s[0], buf, 4) == 4 && memcmp(buf, "more", 4) == 0, "stream after");
    check(read(h[0], buf, 8) == 3 && memcmp(buf, "bye", 3) == 0, "bye before the end");
    check(read(h[0], buf, 8) == 0, "end of stream after bye");
    int st;
    check(waitpid(c, &st, 0) == c, "waitpid");
    say("parent ok child-status=%d\n", st);
    return 0;
}

static int connect_path(const char *p) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, p, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    check(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect %s", p);
    return s;
}

static int server_mode(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "srv.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    check(bind(l, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    check(chmod("srv.sock", 0600) == 0, "chmod");
    check(listen(l, 7) == 0, "listen");
    int sy[2];
    check(pipe(sy) == 0, "pipe");
    pid_t ca = fork();
    if (ca == 0) {
        close(l);
        int s = connect_path("srv.sock");
        check(write(s, "req-A", 5) == 5, "req-A");
        sync_post(sy);
        wait_for_go();
        expect(s, "resp-A", "A's response");
        check(write(s, "bye-A", 5) == 5, "bye-A");
        say("A ok\n");
        _exit(0);
    }
    int sa = accept(l, NULL, NULL);
    check(sa >= 0, "accept A");
    sync_wait(sy);
    check(write(sa, "resp-A", 6) == 6, "resp-A");
    check(pipe(sy) == 0, "pipe");
    pid_t cb = fork();
    if (cb == 0) {
        close(l); close(sa);
        int s = connect_path("srv.sock");
        sync_post(sy);
        wait_for_go();
        check(write(s, "req-B", 5) == 5, "req-B");
        expect(s, "resp-B", "B's response");
        say("B ok\n");
        _exit(0);
    }
    sync_wait(sy);
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d %d %d\n", getpid(), ca, cb);
    fclose(pf);
    say("ready\n");
    wait_for_go();
    char buf[16] = {0};
    check(read(sa, buf, 5) == 5 && memcmp(buf, "req-A", 5) == 0, "req-A queued");
    struct sockaddr_un me = {0};
    socklen_t ml = sizeof me;
    check(getsockname(sa, (struct sockaddr *)&me, &ml) == 0 && strcmp(me.sun_path, "srv.sock") == 0, "accepted socket's name: %s", me.sun_path);
    struct stat stt;
    check(stat("srv.sock", &stt) == 0 && S_ISSOCK(stt.st_mode) && (stt.st_mode & 0777) == 0600, "socket file mode");
    int sb = accept(l, NULL, NULL);
    check(sb >= 0, "accept B");
    expect(sb, "req-B", "B's request");
    check(write(sb, "resp-B", 6) == 6, "resp-B");
    expect(sa, "bye-A", "A's goodbye");
    int s2 = connect_path("srv.sock");
    int sc = accept(l, NULL, NULL);
    check(write(s2, "new", 3) == 3, "new client");
    expect(sc, "new", "a new connection");
    int st1, st2;
    waitpid(ca, &st1, 0);
    waitpid(cb, &st2, 0);
    say("server ok A=%d B=%d\n", st1, st2);
    return 0;
}

static int external_mode(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    check(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect %s", path);
    check(send(s, "log-1", 5, 0) == 5, "log-1");
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d\n", getpid());
    fclose(pf);
    say("ready\n");
    wait_for_go();
    check(send(s, "log-2", 5, 0) == 5, "log-2");
    say("ext ok\n");
    return 0;
}

static int prefork_mode(void) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "pf.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    check(bind(l, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    check(listen(l, 16) == 0, "listen");
    int nl = socket(AF_NETLINK, SOCK_RAW, 0);
    struct sockaddr_nl sn = {.nl_family = AF_NETLINK, .nl_groups = 1};
    check(nl >= 0 && bind(nl, (struct sockaddr *)&sn, sizeof sn) == 0, "netlink");
    pid_t w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = fork();
        if (w[i] == 0) {
            close(nl);
            for (;;) {
                int c = accept(l, NULL, NULL);
                if (c < 0) continue;
                char buf[64];
                ssize_t n = read(c, buf, sizeof buf - 8);
                if (n > 0) {
                    char out[80];
                    int m = snprintf(out, sizeof out, "w%d:%.*s", i + 1, (int)n, buf);
                    check(write(c, out, m) == m, "answer");
                }
                close(c);
            }
        }
    }
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d %d %d\n", getpid(), w[0], w[1]);
    fclose(pf);
    say("ready\n");
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "prefork") == 0) return prefork_mode();
    if (argc > 2 && strcmp(argv[1], "extfork") == 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, "own.sock");
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        check(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0, "listen");
        pid_t c = fork();
        if (c == 0) {
            close(l);
            struct sockaddr_un e = {.sun_family = AF_UNIX};
            strncpy(e.sun_path, argv[2], sizeof e.sun_path - 1);
            int s = socket(AF_UNIX, SOCK_DGRAM, 0);
            check(connect(s, (struct sockaddr *)&e, sizeof e) == 0, "connect");
            for (;;) pause();
        }
        FILE *pf = fopen("pids", "w");
        fprintf(pf, "%d %d\n", getpid(), c);
        fclose(pf);
        say("ready\n");
        for (;;) pause();
    }
    if (argc > 1 && strcmp(argv[1], "passsock") == 0) {
        int c[2], x[2];
        check(socketpair(AF_UNIX, SOCK_STREAM, 0, c) == 0 && socketpair(AF_UNIX, SOCK_DGRAM, 0, x) == 0, "pairs");
        check(send(x[0], "via-x", 5, 0) == 5, "queue on x");
        send_fd(c[0], x[1]);
        close(x[1]);
        FILE *pf = fopen("pids", "w");
        fprintf(pf, "%d\n", getpid());
        fclose(pf);
        say("ready\n");
        wait_for_go();
        int got = recv_fd(c[1]);
        expect(got, "via-x", "queued on the socket in flight");
        check(send(got, "back", 4, 0) == 4, "send back");
        expect(x[0], "back", "the pair still works");
        say("passsock ok\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "inflight") == 0) {
        int p[2], q[2];
        check(socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0 && pipe(q) == 0, "pair, pipe");
        send_fd(p[0], q[0]);
        close(q[0]);
        close(q[1]);
        FILE *pf = fopen("pids", "w");
        fprintf(pf, "%d\n", getpid());
        fclose(pf);
        say("ready\n");
        for (;;) pause();
    }
    if (argc > 1 && strcmp(argv[1], "pair") == 0) return pair_mode();
    if (argc > 1 && strcmp(argv[1], "server") == 0) return server_mode();
    if (argc > 2 && strcmp(argv[1], "external") == 0) return external_mode(argv[2]);
    if (argc > 1 && strcmp(argv[1], "solo") == 0) {
        int p[2];
        check(socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0, "pair");
        check(write(p[0], "queued", 6) == 6, "queue");
        FILE *pf = fopen("pids", "w");
        fprintf(pf, "%d\n", getpid());
        fclose(pf);
        say("ready\n");
        for (;;) pause();
    }
    return 2;
}
