/* A TCP echo server for the sockets tests: listens on ADDR (127.0.0.1 or ::1), port
 * chosen by the kernel and written to PORTFILE, then serves clients one after another
 * with blocking read/write (so a client that stops reading leaves both socket queues
 * full). Usage: tcp_echo ADDR PORTFILE */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int v6 = strchr(argv[1], ':') != NULL;
    int l = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a = (void *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, argv[1], &a->sin6_addr);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (void *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, argv[1], &a->sin_addr);
        len = sizeof *a;
    }
    if (bind(l, (void *)&ss, len) || listen(l, 16)) { perror("bind/listen"); return 1; }
    len = sizeof ss;
    getsockname(l, (void *)&ss, &len);
    int port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                        : ((struct sockaddr_in *)&ss)->sin_port);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "%d\n", port);
    fclose(f);
    rename(tmp, argv[2]);
    static char buf[65536];
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) continue;
        for (;;) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n <= 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(c, buf + off, n - off);
                if (w <= 0) { perror("write"); return 1; }
                off += w;
            }
        }
        close(c);
    }
}
