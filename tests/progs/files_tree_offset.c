/* One open file description shared across fork: usage files_tree_offset DIR.
 * The parent opens DIR/shared.log for writing (no O_APPEND: the shared offset is what
 * keeps the two writers apart), forks, and both append lines "P N" / "C N" (N
 * consecutive from 0 in each) with plain write() every 3 ms. With the offset shared
 * no line is ever overwritten; two offsets would overwrite each other's lines. The
 * parent writes "PARENT CHILD" pids to DIR/pids. */
#include "files_common.h"

static void run(int fd, char who) {
    struct timespec ts = {0, 3 * 1000 * 1000};
    char b[32];
    for (unsigned long i = 0;; i++) {
        int n = snprintf(b, sizeof b, "%c %lu\n", who, i);
        check(write(fd, b, n) == n, "write");
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    check(argc > 1, "usage");
    char log[600], pids[600];
    snprintf(log, sizeof log, "%s/shared.log", argv[1]);
    snprintf(pids, sizeof pids, "%s/pids", argv[1]);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(fd >= 0, "open");
    pid_t c = fork();
    if (c == 0) run(fd, 'C');
    FILE *f = fopen(pids, "w");
    fprintf(f, "%d %d\n", getpid(), c);
    fclose(f);
    run(fd, 'P');
}
