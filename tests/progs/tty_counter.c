/* Prints "tick N" on its standard output (a terminal) every argv[1] milliseconds
 * (default 100), and writes its pid to argv[2] if given: a shell job for
 * `spirit dump --shell-job`. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    long ms = argc > 1 ? atol(argv[1]) : 100;
    if (argc > 2) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { perror("pidfile"); return 1; }
        fprintf(f, "%d\n", getpid());
        fclose(f);
    }
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    for (unsigned long i = 0;; i++) {
        printf("tick %lu\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
}
