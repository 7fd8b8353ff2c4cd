/* usage: orphan_group DIR
 * The parent forks A, which leads a new process group, and B, which joins A's group;
 * A exits and is reaped, so the group lives on without its leader. B counts into
 * DIR/b.log; the parent writes "A B" to DIR/pids and idles. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    char p[600];
    pid_t a = fork();
    if (a == 0) { setpgid(0, 0); pause(); _exit(0); }
    setpgid(a, a);
    pid_t b = fork();
    if (b == 0) {
        setpgid(0, a);
        snprintf(p, sizeof p, "%s/b.log", argv[1]);
        int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
        struct timespec ts = {0, 10 * 1000 * 1000};
        for (unsigned long i = 0;; i++) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%lu\n", i);
            if (write(fd, buf, n) != n) _exit(2);
            nanosleep(&ts, 0);
        }
    }
    setpgid(b, a);
    kill(a, 9);
    waitpid(a, 0, 0);
    snprintf(p, sizeof p, "%s/pids", argv[1]);
    FILE *f = fopen(p, "w");
    fprintf(f, "%d %d\n", a, b);
    fclose(f);
    for (;;) pause();
}
