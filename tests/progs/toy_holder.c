/* A process holding a file (argv[1]) at fd 3 for the toy external plugin's test: reads
 * 4 bytes, says "ready", waits for ./go, then reports the rest of the file as read
 * through fd 3 (from the same offset) and whether the fd is close-on-exec. */
#include "files_common.h"

int main(int argc, char **argv) {
    check(argc == 2, "usage: toy_holder FILE");
    int fd = open(argv[1], O_RDONLY);
    check(fd == 3, "open %s at fd 3 (got %d)", argv[1], fd);
    char buf[256] = {0};
    check(read(fd, buf, 4) == 4, "read 4");
    say("first %s\n", buf);
    say("ready\n");
    wait_for_go();
    memset(buf, 0, sizeof buf);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    check(n >= 0, "read the rest");
    say("rest %s\n", buf);
    say("cloexec=%d\n", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    say("done\n");
    return 0;
}
