/* Four threads (main and three more), each with a __thread counter, taking turns on one
 * contended mutex that protects a shared counter. Under the mutex each thread appends
 * "T<i> tid=<gettid> mine=<tls counter> shared=<shared counter>\n" to the O_APPEND log
 * argv[1], so the log's shared values run 1, 2, 3... and each thread's own values run
 * 1, 2, 3... with a constant tid. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int logfd;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long shared;
static __thread unsigned long mine;

static void *worker(void *arg) {
    long id = (long)arg;
    struct timespec pause = { 0, 2000000 };
    for (;;) {
        pthread_mutex_lock(&lock);
        unsigned long s = ++shared;
        mine++;
        /* hold the lock a little, so the others pile up on it */
        for (volatile int spin = 0; spin < 20000; spin++) {}
        char buf[128];
        int n = snprintf(buf, sizeof buf, "T%ld tid=%d mine=%lu shared=%lu\n", id, gettid(),
                         mine, s);
        if (write(logfd, buf, n) != n) exit(2);
        pthread_mutex_unlock(&lock);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    logfd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0) { perror("open"); return 1; }
    pthread_t t[3];
    for (long i = 1; i <= 3; i++)
        if (pthread_create(&t[i - 1], NULL, worker, (void *)i)) return 3;
    worker((void *)0);
}
