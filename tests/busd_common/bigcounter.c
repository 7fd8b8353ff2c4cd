/* Like tests/progs/counter.c (appends consecutive numbers to the O_APPEND log argv[1]
 * every argv[2] ms), but first touches argv[3] MiB of memory, so that a checkpoint has
 * enough pages to show progress and a migration takes long enough to break. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) { perror("open"); return 1; }
    long ms = argc > 2 ? atol(argv[2]) : 20;
    size_t mib = argc > 3 ? (size_t)atol(argv[3]) : 0;
    unsigned char *mem = malloc(mib << 20);
    for (size_t i = 0; i < (mib << 20); i += 4096) mem[i] = (unsigned char)(i >> 12) | 1;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    char buf[32];
    for (unsigned long i = 0;; i++) {
        int n = snprintf(buf, sizeof buf, "%lu\n", i);
        if (write(fd, buf, n) != n) return 2;
        if (mib && mem[(i * 4096) % (mib << 20)] == 0) return 3;
        nanosleep(&ts, NULL);
    }
}
