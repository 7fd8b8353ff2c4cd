/* A tmux-like pty server without sockets: opens two ptys (window sizes 20x70 and
 * 21x71), runs an interactive bash on each slave as a session leader whose controlling
 * terminal it is, keeps only the masters, and appends what each pane writes to
 * argv[1]/paneN.out. Writes "SERVER CHILD0 CHILD1 MASTERFD0 MASTERFD1" to
 * argv[1]/server.pids once all runs. Input reaches the panes through the masters (a
 * test writes into a pidfd_getfd copy of one). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int m[2], out[2];
    pid_t kid[2];
    char path[4096];
    for (int i = 0; i < 2; i++) {
        m[i] = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m[i] < 0 || grantpt(m[i]) || unlockpt(m[i])) { perror("pty"); return 1; }
        struct winsize ws = { .ws_row = 20 + i, .ws_col = 70 + i };
        ioctl(m[i], TIOCSWINSZ, &ws);
        snprintf(path, sizeof path, "%s/pane%d.out", argv[1], i);
        out[i] = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out[i] < 0) { perror(path); return 1; }
        char *name = ptsname(m[i]);
        kid[i] = fork();
        if (kid[i] < 0) { perror("fork"); return 1; }
        if (kid[i] == 0) {
            setsid();
            int s = open(name, O_RDWR); /* becomes the controlling terminal */
            if (s < 0) { perror(name); _exit(1); }
            dup2(s, 0); dup2(s, 1); dup2(s, 2);
            if (s > 2) close(s);
            setenv("PS1", "$ ", 1);
            execlp("bash", "bash", "--norc", "--noprofile", "-i", (char *)NULL);
            _exit(127);
        }
    }
    snprintf(path, sizeof path, "%s/server.pids", argv[1]);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    fprintf(f, "%d %d %d %d %d\n", getpid(), kid[0], kid[1], m[0], m[1]);
    fclose(f);
    struct pollfd p[2] = { { m[0], POLLIN, 0 }, { m[1], POLLIN, 0 } };
    char buf[4096];
    for (;;) {
        if (poll(p, 2, -1) < 0) continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].revents & POLLIN) {
                ssize_t n = read(m[i], buf, sizeof buf);
                if (n > 0 && write(out[i], buf, n) != n) return 3;
            }
            if (p[i].revents & (POLLHUP | POLLERR)) p[i].fd = -1;
        }
    }
}
