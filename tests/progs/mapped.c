/* Memory objects no path gives back: a file deleted while mapped (private, with a
 * page changed, and shared), a memfd mapped and closed, and shared anonymous memory
 * shared with a forked child that counts in it. Every 20 ms the parent appends
 * "N priv=.. shared=.. memfd=.. child=COUNT" to the log (argv[1]); argv[2] is a
 * directory for the file it deletes. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096

static int check(const char *p, char c, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != c) return 0;
    return 1;
}

int main(int argc, char **argv) {
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    char path[4096];
    snprintf(path, sizeof path, "%s/gone", argv[2]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char page[PG];
    memset(page, 'f', PG);
    for (int i = 0; i < 3; i++)
        if (write(fd, page, PG) != PG) return 1;
    char *priv = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *shared = mmap(NULL, 3 * PG, PROT_READ, MAP_SHARED, fd, 0);
    if (priv == MAP_FAILED || shared == MAP_FAILED) return 2;
    close(fd);
    unlink(path);
    memset(priv + PG, 'X', PG); /* copy-on-write: this page is the process's own */
    int mfd = memfd_create("spirit-test", 0);
    memset(page, 'm', PG);
    if (write(mfd, page, PG) != PG) return 3;
    char *mem = mmap(NULL, PG, PROT_READ, MAP_SHARED, mfd, 0);
    if (mem == MAP_FAILED) return 4;
    close(mfd);
    volatile unsigned long *anon =
        mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) return 5;
    struct timespec ts = {0, 20 * 1000000L};
    if (fork() == 0) {
        for (;;) {
            anon[0]++;
            nanosleep(&ts, NULL);
        }
    }
    char buf[256];
    for (unsigned long i = 0;; i++) {
        int ok_priv = check(priv, 'f', PG) && check(priv + PG, 'X', PG) &&
                      check(priv + 2 * PG, 'f', PG);
        int n = snprintf(buf, sizeof buf, "%lu priv=%d shared=%d memfd=%d child=%lu\n", i,
                         ok_priv, check(shared, 'f', 3 * PG), check(mem, 'm', PG), anon[0]);
        if (write(log, buf, n) != n) return 6;
        nanosleep(&ts, NULL);
    }
}
