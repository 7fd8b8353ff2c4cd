/* Prints "tick N" on its standard output (a terminal) every argv[1] milliseconds
 * (default 100), and writes its pid to argv[2] if given: a shell job for
 * `spirit dump --shell-job`. On SIGWINCH it prints "winch ROWS COLS" (the new size). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t winch;

static void on_winch(int sig) { (void)sig; winch = 1; }

int main(int argc, char **argv) {
    long ms = argc > 1 ? atol(argv[1]) : 100;
    if (argc > 2) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { perror("pidfile"); return 1; }
        fprintf(f, "%d\n", getpid());
        fclose(f);
    }
    signal(SIGWINCH, on_winch);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    for (unsigned long i = 0;; i++) {
        if (winch) {
            struct winsize ws = { 0 };
            ioctl(1, TIOCGWINSZ, &ws);
            printf("winch %d %d\n", ws.ws_row, ws.ws_col);
            winch = 0;
        }
        printf("tick %lu\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
}
