/* A small process tree: usage tree DIR
 * root: becomes a session leader, forks
 *   A — counts into DIR/a.log,
 *   B — exits at once with status 7 and stays a zombie until the root reaps it,
 *   C — leads its own process group, counts into DIR/c.log,
 * writes "A B C" pids to DIR/pids, counts into DIR/root.log, and once DIR/go exists
 * reaps B and writes its exit status to DIR/reaped. Each log line is one number,
 * consecutive from 0. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[512];

static void path(char *out, const char *name) { snprintf(out, 600, "%s/%s", dir, name); }

static void count(const char *name) {
    char p[600];
    path(p, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (unsigned long i = 0;; i++) {
        char b[32];
        int n = snprintf(b, sizeof b, "%lu\n", i);
        if (write(fd, b, n) != n) _exit(2);
        nanosleep(&ts, 0);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    setsid();
    pid_t a = fork();
    if (a == 0) count("a.log");
    pid_t b = fork();
    if (b == 0) _exit(7);
    pid_t c = fork();
    if (c == 0) { setpgid(0, 0); count("c.log"); }
    char p[600];
    path(p, "pids");
    FILE *f = fopen(p, "w");
    fprintf(f, "%d %d %d\n", a, b, c);
    fclose(f);
    char go[600], reaped[600], rlog[600];
    path(go, "go");
    path(reaped, "reaped");
    path(rlog, "root.log");
    int fd = open(rlog, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int done = 0;
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (unsigned long i = 0;; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%lu\n", i);
        if (write(fd, buf, n) != n) return 2;
        if (!done && access(go, F_OK) == 0) {
            int st = 0;
            pid_t r = waitpid(b, &st, 0);
            FILE *o = fopen(reaped, "w");
            fprintf(o, "%d %d\n", r == b, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            fclose(o);
            done = 1;
        }
        nanosleep(&ts, 0);
    }
}
