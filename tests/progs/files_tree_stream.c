/* Processes joined by pipes. Modes:
 *   stream DIR  — the parent makes a pipe of capacity 128 KiB, forks a reader child,
 *                 writes "0\n1\n2\n..." into it as fast as the pipe takes them (so the
 *                 pipe is full at any moment); the child reads 64 bytes every 2 ms
 *                 and appends each complete number to DIR/reader.log. Writes "PARENT
 *                 CHILD" pids to DIR/pids; the parent rewrites DIR/cap with the pipe's
 *                 capacity (F_GETPIPE_SZ) every 4096 numbers.
 *   produce     — writes "0\n1\n..." to stdout as fast as it is taken.
 *   consume LOG — reads stdin 64 bytes every 2 ms, appends each complete line to LOG. */
#include "files_common.h"
#include <sys/wait.h>

static void consume(int in, const char *log) {
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    check(out >= 0, "open %s", log);
    char buf[4096];
    size_t have = 0;
    struct timespec ts = {0, 2 * 1000 * 1000};
    for (;;) {
        ssize_t n = read(in, buf + have, 64);
        if (n == 0) _exit(0);
        if (n < 0) {
            if (errno == EINTR) continue;
            _exit(3);
        }
        have += n;
        char *nl = memrchr(buf, '\n', have);
        if (nl) {
            size_t line = nl - buf + 1;
            check(write(out, buf, line) == (ssize_t)line, "log");
            memmove(buf, buf + line, have - line);
            have -= line;
        }
        nanosleep(&ts, NULL);
    }
}

static void produce(int out, const char *cap) {
    char b[32];
    for (unsigned long i = 0;; i++) {
        int n = snprintf(b, sizeof b, "%lu\n", i);
        for (int off = 0; off < n;) {
            ssize_t w = write(out, b + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) _exit(4);
            off += w;
        }
        if (cap && i % 4096 == 0) {
            char tmp[600];
            snprintf(tmp, sizeof tmp, "%s.tmp", cap);
            FILE *f = fopen(tmp, "w");
            if (f) {
                fprintf(f, "%d\n", fcntl(out, F_GETPIPE_SZ));
                fclose(f);
                rename(tmp, cap);
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "produce") == 0) produce(1, NULL);
    if (argc > 2 && strcmp(argv[1], "consume") == 0) consume(0, argv[2]);
    check(argc > 2 && strcmp(argv[1], "stream") == 0, "usage");
    const char *dir = argv[2];
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(fcntl(p[1], F_SETPIPE_SZ, 128 * 1024) >= 128 * 1024, "F_SETPIPE_SZ");
    char log[600], cap[600], pids[600];
    snprintf(log, sizeof log, "%s/reader.log", dir);
    snprintf(cap, sizeof cap, "%s/cap", dir);
    snprintf(pids, sizeof pids, "%s/pids", dir);
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        consume(p[0], log);
    }
    close(p[0]);
    FILE *f = fopen(pids, "w");
    fprintf(f, "%d %d\n", getpid(), c);
    fclose(f);
    produce(p[1], cap);
}
