/* A dynamically linked program calling into a small shared library of the test's
 * (libsptest.so, found through its rpath): every 50 ms it appends "N VERSION\n" to the
 * log argv[1], N counting up from 0 and VERSION the string the library's
 * sptest_version() returns, so its log shows which copy of the library it runs. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *sptest_version(void);

int main(int argc, char **argv) {
    if (argc < 2) return 1;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) return 1;
    struct timespec ts = { 0, 50 * 1000 * 1000 };
    for (unsigned long n = 0;; n++) {
        char line[128];
        int len = snprintf(line, sizeof line, "%lu %s\n", n, sptest_version());
        if (write(log, line, len) != len) return 2;
        nanosleep(&ts, NULL);
    }
}
