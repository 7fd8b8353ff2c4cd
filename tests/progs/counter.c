/* Counts up forever, appending "N\n" to the O_APPEND log given as argv[1] every
 * argv[2] milliseconds (default 20). Exact continuity across a checkpoint shows in
 * the log: every number once, in order.
 *
 * argv[3], optional, makes it also hold a descriptor spirit cannot checkpoint yet:
 * "pipe" (a pipe, fds 4 and 5) or "socket" (a packet socket, fd 4: refused); or
 * "exit-at=N" makes it exit with status 42 once it has written N. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) { perror("open"); return 1; }
    long ms = argc > 2 ? atol(argv[2]) : 20;
    int extra[2];
    if (argc > 3 && !strcmp(argv[3], "pipe") && pipe(extra)) { perror("pipe"); return 1; }
    if (argc > 3 && !strcmp(argv[3], "socket") &&
        (extra[0] = socket(AF_PACKET, SOCK_DGRAM, 0)) < 0) { perror("socket"); return 1; }
    long exit_at = -1;
    if (argc > 3 && !strncmp(argv[3], "exit-at=", 8)) exit_at = atol(argv[3] + 8);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    char buf[32];
    for (unsigned long i = 0;; i++) {
        int n = snprintf(buf, sizeof buf, "%lu\n", i);
        if (write(fd, buf, n) != n) return 2;
        if ((long)i == exit_at) return 42;
        nanosleep(&ts, NULL);
    }
}
