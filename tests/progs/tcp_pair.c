/* Both ends of a TCP connection inside the tree: the parent listens on 127.0.0.1 (port
 * from the kernel) and echoes; its child connects, sends a counter, reads it back and
 * appends it to ./pair.log ("0\n1\n..."), every 2 ms. Pids go to ./pids ("PARENT
 * CHILD"). A broken connection or a wrong echo ends the child with a message. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int full(ssize_t (*op)(int, void *, size_t), int fd, void *buf, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t r = op(fd, (char *)buf + off, n - off);
        if (r <= 0) return -1;
        off += r;
    }
    return 0;
}

static ssize_t wr(int fd, void *b, size_t n) { return write(fd, b, n); }

int main(void) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (bind(l, (void *)&a, len) || listen(l, 4) || getsockname(l, (void *)&a, &len)) {
        perror("listen");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(l);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (void *)&a, len)) { perror("connect"); return 1; }
        int log = open("pair.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        for (uint64_t n = 0;; n++) {
            uint64_t back;
            if (full(wr, c, &n, 8) || full(read, c, &back, 8)) {
                perror("child: connection");
                return 1;
            }
            if (back != n) { fprintf(stderr, "child: sent %lu, got %lu\n", n, back); return 1; }
            char line[32];
            int k = snprintf(line, sizeof line, "%lu\n", n);
            write(log, line, k);
            usleep(2000);
        }
    }
    int s = accept(l, NULL, NULL);
    FILE *f = fopen("pids.tmp", "w");
    fprintf(f, "%d %d\n", getpid(), child);
    fclose(f);
    rename("pids.tmp", "pids");
    for (;;) {
        uint64_t n;
        if (full(read, s, &n, 8) || full(wr, s, &n, 8)) {
            perror("parent: connection");
            return 1;
        }
    }
}
