/* A /proc file held open across a checkpoint: /proc/self/status (the kernel shows it as
 * /proc/PID/status), read up to "Name:" before. After the restore (and ./go) it reads
 * on from its offset, then reads the file again from the start and reports the pid
 * the file shows beside its own. */
#include "files_common.h"

int main(void) {
    int fd = open("/proc/self/status", O_RDONLY);
    check(fd >= 0, "open /proc/self/status");
    char buf[8192];
    check(read(fd, buf, 5) == 5 && memcmp(buf, "Name:", 5) == 0, "read Name:");
    say("ready fd=%d pid=%d\n", fd, getpid());
    wait_for_go();
    /* The offset survived: the next byte follows "Name:". */
    check(read(fd, buf, 1) == 1, "read on");
    say("after Name: %s\n", buf[0] == '\t' ? "tab" : "other");
    check(lseek(fd, 0, SEEK_SET) == 0, "lseek");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    check(n > 0, "read again");
    buf[n] = 0;
    char *p = strstr(buf, "\nPid:");
    check(p != NULL, "Pid: line in %s", buf);
    say("status pid=%d getpid=%d\n", atoi(p + 5), getpid());
    say("done\n");
    return 0;
}
