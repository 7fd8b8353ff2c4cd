/* Shared by the files_* test programs: report lines on stdout (a file the test
 * reads), wait for the test's "go" file in the working directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define say(...) dprintf(1, __VA_ARGS__)
#define check(cond, ...) do { if (!(cond)) { say("FAIL %s:%d: ", __FILE__, __LINE__); say(__VA_ARGS__); say(" (errno %d)\n", errno); exit(1); } } while (0)

/* Sleep in small steps until ./go exists (created by the test after the restore). */
static void wait_for_go(void) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (access("go", F_OK) != 0) nanosleep(&ts, NULL);
}
