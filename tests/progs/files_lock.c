/* File locks. Mode "hold": takes an exclusive flock on ./flocked, a POSIX write lock
 * on bytes 10..19 of ./posixlocked and an OFD read lock on ./ofdlocked, then (after
 * "go") reports F_GETLK as seen from its own side and exits. Mode "try PATH KIND":
 * tries, without waiting, to take a conflicting lock (KIND flock, posix or ofd) and
 * exits 0 if it got it, 1 if the lock is held by someone else. */
#include "files_common.h"
#include <sys/file.h>

static int try_lock(const char *path, const char *kind) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return 2;
    if (strcmp(kind, "flock") == 0) return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : 1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int cmd = strcmp(kind, "ofd") == 0 ? F_OFD_SETLK : F_SETLK;
    return fcntl(fd, cmd, &fl) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc > 3 && strcmp(argv[1], "try") == 0) return try_lock(argv[2], argv[3]);
    int a = open("flocked", O_RDWR | O_CREAT, 0644);
    int b = open("posixlocked", O_RDWR | O_CREAT, 0644);
    int c = open("ofdlocked", O_RDWR | O_CREAT, 0644);
    check(a >= 0 && b >= 0 && c >= 0, "open");
    check(flock(a, LOCK_EX | LOCK_NB) == 0, "flock");
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
    check(fcntl(b, F_SETLK, &fl) == 0, "posix lock");
    struct flock ofd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    check(fcntl(c, F_OFD_SETLK, &ofd) == 0, "ofd lock");
    say("ready\n");
    wait_for_go();
    say("done\n");
    for (;;) pause();
}
