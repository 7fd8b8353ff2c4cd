/* Descriptors sharing one open file description: fd 3 (opened), 4 = dup(3),
 * 10 = F_DUPFD_CLOEXEC(3); fd 5 opens the same file separately. Before the checkpoint
 * fd 3 reads 2 bytes and fd 5 one byte. After the restore ("go"): reads through 4, 10
 * and 5 show which offsets are shared; FD_CLOEXEC of each fd is reported. */
#include "files_common.h"

static void rd(int fd, char *out, int n) {
    check(read(fd, out, n) == n, "read fd %d", fd);
    out[n] = 0;
}

int main(int argc, char **argv) {
    int a = open(argv[1], O_RDONLY);
    check(a == 3, "open gave %d", a);
    check(dup(3) == 4, "dup");
    check(open(argv[1], O_RDONLY | O_CLOEXEC) == 5, "second open");
    check(fcntl(3, F_DUPFD_CLOEXEC, 10) == 10, "F_DUPFD_CLOEXEC");
    char b[8];
    rd(3, b, 2);
    rd(5, b, 1);
    say("ready\n");
    wait_for_go();
    char x[8], y[8], z[8];
    rd(4, x, 2);
    rd(10, y, 2);
    rd(5, z, 2);
    say("via4=%s via10=%s via5=%s\n", x, y, z);
    say("cloexec 3=%d 4=%d 5=%d 10=%d\n", fcntl(3, F_GETFD) & FD_CLOEXEC, fcntl(4, F_GETFD) & FD_CLOEXEC,
        fcntl(5, F_GETFD) & FD_CLOEXEC, fcntl(10, F_GETFD) & FD_CLOEXEC);
    say("done\n");
    return 0;
}
