/* A UDP echo server for the sockets tests: binds ADDR (127.0.0.1 or ::1), port chosen
 * by the kernel and written to PORTFILE, then sends every datagram back to its sender
 * prefixed with "echo ". Usage: udp_echo ADDR PORTFILE */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int v6 = strchr(argv[1], ':') != NULL;
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
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
    if (bind(s, (void *)&ss, len)) { perror("bind"); return 1; }
    len = sizeof ss;
    getsockname(s, (void *)&ss, &len);
    int port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                        : ((struct sockaddr_in *)&ss)->sin_port);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "%d\n", port);
    fclose(f);
    rename(tmp, argv[2]);
    for (;;) {
        char buf[2048], out[2100];
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (void *)&from, &fl);
        if (n < 0) continue;
        memcpy(out, "echo ", 5);
        memcpy(out + 5, buf, n);
        sendto(s, out, n + 5, 0, (void *)&from, fl);
    }
}
