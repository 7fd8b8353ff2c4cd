/* File states at the edges, one mode per test (argv[1]); each mode sets its state up,
 * says "ready", waits for ./go after the restore, checks its own state and says "done"
 * (or "FAIL ...").
 *   pipe_eof    a pipe whose write end is closed: 9 bytes in flight, then EOF.
 *   pipe_epipe  a pipe whose read end is closed (SIGPIPE ignored): write gets EPIPE.
 *   high_fd     a pipe's read end and a file at fds 8210 and 8211, shared with 3
 *               children, each of which reads its share; pids in ./pids; and a
 *               tmpfile() (O_TMPFILE) at 8212, shared the same way. */
#include "files_common.h"
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int pipe_eof(void) {
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(write(p[1], "tail data", 9) == 9, "write");
    close(p[1]);
    say("ready\n");
    wait_for_go();
    char b[32];
    ssize_t n = read(p[0], b, sizeof b);
    check(n == 9 && memcmp(b, "tail data", 9) == 0, "read the data in flight (%zd)", n);
    n = read(p[0], b, sizeof b);
    check(n == 0, "EOF after the data (got %zd)", n);
    say("pipe_eof: data then EOF\n");
    return 0;
}

static int pipe_epipe(void) {
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    check(pipe(p) == 0, "pipe");
    close(p[0]);
    say("ready\n");
    wait_for_go();
    errno = 0;
    ssize_t n = write(p[1], "x", 1);
    check(n == -1 && errno == EPIPE, "write to a pipe without readers gave %zd", n);
    say("pipe_epipe: EPIPE\n");
    return 0;
}

static int high_fd(void) {
    struct rlimit rl = {16384, 16384};
    check(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(dup2(p[0], 8210) == 8210, "dup2 pipe");
    close(p[0]);
    int f = open("data", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(f >= 0, "open data");
    check(write(f, "abcdefghijkl", 12) == 12, "write data");
    check(lseek(f, 0, SEEK_SET) == 0, "lseek");
    check(dup2(f, 8211) == 8211, "dup2 file");
    close(f);
    /* glibc's tmpfile() opens with O_TMPFILE (it stays in the open flags). */
    FILE *tf = tmpfile();
    check(tf != NULL, "tmpfile");
    check(write(fileno(tf), "ABCDEFGHIJKL", 12) == 12, "write tmpfile");
    check(lseek(fileno(tf), 0, SEEK_SET) == 0, "lseek tmpfile");
    check(dup2(fileno(tf), 8212) == 8212, "dup2 tmpfile");
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        check(kids[i] >= 0, "fork");
        if (kids[i] == 0) {
            close(p[1]);
            wait_for_go();
            char b[4];
            /* The children take turns (by index) on the shared offset. */
            struct timespec ts = {0, 100 * 1000 * 1000 * i};
            nanosleep(&ts, NULL);
            check(read(8210, b, 4) == 4, "child %d reads the pipe", i);
            check(read(8211, b, 4) == 4, "child %d reads the file", i);
            check(read(8212, b, 4) == 4 && b[0] == 'A' + 4 * i, "child %d reads the tmpfile", i);
            say("child %d pipe+file ok, fd %d\n", i, 8210);
            _exit(0);
        }
    }
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d %d %d %d\n", getpid(), kids[0], kids[1], kids[2]);
    fclose(pf);
    check(write(p[1], "000011112222", 12) == 12, "fill the pipe");
    say("ready\n");
    wait_for_go();
    for (int i = 0; i < 3; i++) {
        int st;
        check(waitpid(kids[i], &st, 0) == kids[i], "waitpid");
        check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %d", i, st);
    }
    check(lseek(8211, 0, SEEK_CUR) == 12, "shared offset at 12");
    check(lseek(8212, 0, SEEK_CUR) == 12, "shared tmpfile offset at 12");
    say("high_fd: 3 children shared fds 8210 and 8211\n");
    return 0;
}

/* Files reached by path the usual ways: "t1" (atime 2001-01-01, mtime 2000-01-01)
 * opened read-only through the symlink "link", and with O_PATH (so are a FIFO,
 * /dev/null and the directory). After the restore:
 * the same inode, the flags, and neither time moved (spirit hashes and reopens it). */
static int paths(void) {
    int f = open("t1", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(f >= 0 && write(f, "content", 7) == 7, "make t1");
    close(f);
    struct timespec t[2] = {{978307200, 0}, {946684800, 0}};
    check(utimensat(AT_FDCWD, "t1", t, 0) == 0, "utimensat");
    check(symlink("t1", "link") == 0, "symlink");
    int a = open("link", O_RDONLY);
    check(a >= 0, "open link");
    int p = open("t1", O_PATH);
    check(p >= 0, "open O_PATH");
    check(mkfifo("pf", 0600) == 0, "mkfifo");
    int pf = open("pf", O_PATH), pn = open("/dev/null", O_PATH), pd = open(".", O_PATH | O_DIRECTORY);
    check(pf >= 0 && pn >= 0 && pd >= 0, "O_PATH of a FIFO, a device, a directory");
    say("ready\n");
    wait_for_go();
    struct stat st, sa, sp;
    check(stat("t1", &st) == 0 && fstat(a, &sa) == 0 && fstat(p, &sp) == 0, "stat");
    check(sa.st_ino == st.st_ino && sp.st_ino == st.st_ino, "same inode");
    check(fcntl(p, F_GETFL) & O_PATH, "O_PATH kept (flags %o)", fcntl(p, F_GETFL));
    int others[] = {pf, pn, pd};
    const char *names[] = {"pf", "/dev/null", "."};
    for (int i = 0; i < 3; i++) {
        struct stat a, b;
        check(fcntl(others[i], F_GETFL) & O_PATH, "O_PATH kept on %s", names[i]);
        check(fstat(others[i], &a) == 0 && stat(names[i], &b) == 0 && a.st_ino == b.st_ino, "%s same inode", names[i]);
    }
    char b[8];
    errno = 0;
    check(read(p, b, 1) == -1 && errno == EBADF, "an O_PATH fd cannot read");
    say("times atime=%ld mtime=%ld\n", (long)st.st_atime, (long)st.st_mtime);
    check(read(a, b, 7) == 7 && !memcmp(b, "content", 7), "read through the symlink's fd");
    say("paths: symlink and O_PATH ok\n");
    return 0;
}

/* FIFOs in every open mode, each with data in flight: "rw" opened read-write alone;
 * "pair" with a reader and a writer; "ronly" a reader whose writer closed (POLLHUP,
 * data then EOF); "wonly" a writer whose reader closed (EPIPE, its data still there for a later
 * reader); "lonely" a reader that never saw a writer (polls nothing, no POLLHUP). */
static int fifos(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *names[] = {"rw", "pair", "ronly", "wonly"};
    for (int i = 0; i < 4; i++) check(mkfifo(names[i], 0600) == 0, "mkfifo %s", names[i]);
    int rw = open("rw", O_RDWR);
    check(rw >= 0 && write(rw, "rw-data", 7) == 7, "rw");
    int pr = open("pair", O_RDONLY | O_NONBLOCK), pw = open("pair", O_WRONLY);
    check(pr >= 0 && pw >= 0 && write(pw, "pair-data", 9) == 9, "pair");
    check(fcntl(pr, F_SETFL, 0) == 0, "pair blocking");
    int rr = open("ronly", O_RDONLY | O_NONBLOCK), rw2 = open("ronly", O_WRONLY);
    check(rr >= 0 && rw2 >= 0 && write(rw2, "reader-alone", 12) == 12, "ronly");
    close(rw2);
    check(fcntl(rr, F_SETFL, 0) == 0, "ronly blocking");
    check(mkfifo("lonely", 0600) == 0, "mkfifo lonely");
    int lonely = open("lonely", O_RDONLY | O_NONBLOCK);
    check(lonely >= 0, "lonely");
    int wr = open("wonly", O_RDONLY | O_NONBLOCK), ww = open("wonly", O_WRONLY);
    check(wr >= 0 && ww >= 0 && write(ww, "lost", 4) == 4, "wonly");
    close(wr);
    say("ready\n");
    wait_for_go();
    char b[32] = {0};
    check((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw mode");
    check(read(rw, b, sizeof b) == 7 && !memcmp(b, "rw-data", 7), "rw data");
    check((fcntl(pr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_RDONLY && (fcntl(pw, F_GETFL) & O_ACCMODE) == O_WRONLY, "pair modes");
    check(read(pr, b, sizeof b) == 9 && !memcmp(b, "pair-data", 9), "pair data");
    check(write(pw, "more", 4) == 4 && read(pr, b, sizeof b) == 4 && !memcmp(b, "more", 4), "pair flows");
    struct pollfd pfd = {.fd = rr, .events = POLLIN};
    check(poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP), "ronly polls POLLHUP (%x)", pfd.revents);
    struct pollfd lp = {.fd = lonely, .events = POLLIN};
    check(poll(&lp, 1, 0) == 0, "lonely (never saw a writer) polls nothing (%x)", lp.revents);
    check(read(rr, b, sizeof b) == 12 && !memcmp(b, "reader-alone", 12), "ronly data");
    check(read(rr, b, sizeof b) == 0, "ronly EOF");
    errno = 0;
    check(write(ww, "x", 1) == -1 && errno == EPIPE, "wonly EPIPE");
    int later = open("wonly", O_RDONLY | O_NONBLOCK);
    check(later >= 0 && read(later, b, sizeof b) == 4 && !memcmp(b, "lost", 4), "wonly data for a later reader");
    say("fifos: rw pair ronly wonly ok\n");
    return 0;
}

/* Signal-driven I/O: a pipe's read end is O_ASYNC, owned by the process (F_SETOWN)
 * with SIGUSR1 (F_SETSIG). After the restore the owner is the process's pid (its new
 * one under --new-pid) and a write delivers SIGUSR1 with si_fd the read end. */
static volatile sig_atomic_t got_fd = -1;
static void on_io(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    got_fd = si->si_fd;
}

static int owner(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_io;
    sa.sa_flags = SA_SIGINFO;
    check(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    int p[2];
    check(pipe(p) == 0, "pipe");
    check(fcntl(p[0], F_SETOWN, getpid()) == 0, "F_SETOWN");
    check(fcntl(p[0], F_SETSIG, SIGUSR1) == 0, "F_SETSIG");
    check(fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) == 0, "O_ASYNC");
    say("ready\n");
    wait_for_go();
    check(fcntl(p[0], F_GETOWN) == getpid(), "owner %d, pid %d", fcntl(p[0], F_GETOWN), getpid());
    check(fcntl(p[0], F_GETSIG) == SIGUSR1, "signal %d", fcntl(p[0], F_GETSIG));
    check(write(p[1], "x", 1) == 1, "write");
    for (int i = 0; i < 200 && got_fd < 0; i++) usleep(5000);
    check(got_fd == p[0], "SIGUSR1 with si_fd %d", (int)got_fd);
    say("owner: SIGUSR1 for fd %d to its own pid\n", p[0]);
    return 0;
}

/* Leases: a read lease on "rl" and a write lease on "wl", each through a read-only
 * descriptor. After the restore both are held again: F_GETLEASE, and opening "rl" for
 * writing (non-blocking) is refused with EWOULDBLOCK while the lease is broken. */
static int leases(void) {
    signal(SIGIO, SIG_IGN);
    int mk = open("rl", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(mk >= 0, "make rl");
    close(mk);
    mk = open("wl", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    check(mk >= 0, "make wl");
    close(mk);
    int r = open("rl", O_RDONLY), w = open("wl", O_RDONLY);
    check(r >= 0 && w >= 0, "open");
    check(fcntl(r, F_SETLEASE, F_RDLCK) == 0, "read lease");
    check(fcntl(w, F_SETLEASE, F_WRLCK) == 0, "write lease");
    say("ready\n");
    wait_for_go();
    check(fcntl(r, F_GETLEASE) == F_RDLCK, "read lease back (%d)", fcntl(r, F_GETLEASE));
    check(fcntl(w, F_GETLEASE) == F_WRLCK, "write lease back (%d)", fcntl(w, F_GETLEASE));
    errno = 0;
    check(open("rl", O_WRONLY | O_NONBLOCK) == -1 && errno == EWOULDBLOCK, "the read lease holds off a writer");
    say("leases: read and write held again\n");
    return 0;
}

/* Deleted files: "a" unlinked while open with its hard link "b" left (comes back as
 * b's inode, offset kept, writes seen through b); "sp", a 200 MiB sparse file with
 * three small extents, unlinked (comes back sparse with its extents and size). Mode
 * "farlink": the only other link is in another directory (the checkpoint refuses). */
#define MiB (1024L * 1024)
static int deleted(int far) {
    if (far) {
        check(mkdir("sub", 0755) == 0, "mkdir");
        int f = open("sub/x", O_RDWR | O_CREAT, 0644);
        check(f >= 0 && link("sub/x", "y") == 0 && unlink("sub/x") == 0, "far link");
        say("ready fd=%d\n", f);
        for (;;) pause();
    }
    int a = open("a", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(a >= 0 && write(a, "hello", 5) == 5, "make a");
    check(link("a", "b") == 0, "link");
    check(lseek(a, 2, SEEK_SET) == 2 && unlink("a") == 0, "unlink a");
    int sp = open("sp", O_RDWR | O_CREAT | O_TRUNC, 0644);
    check(sp >= 0 && ftruncate(sp, 200 * MiB) == 0, "make sp");
    check(pwrite(sp, "head", 4, 0) == 4 && pwrite(sp, "mid", 3, 100 * MiB) == 3 &&
          pwrite(sp, "tail", 4, 200 * MiB - 4) == 4, "fill sp");
    check(lseek(sp, 12345, SEEK_SET) == 12345 && unlink("sp") == 0, "unlink sp");
    say("ready\n");
    wait_for_go();
    struct stat sa, sb, ss;
    check(fstat(a, &sa) == 0 && stat("b", &sb) == 0 && sa.st_ino == sb.st_ino, "a is b's inode");
    char buf[8] = {0};
    check(read(a, buf, 3) == 3 && !memcmp(buf, "llo", 3), "a's offset and content");
    check(write(a, "!", 1) == 1, "write a");
    int b = open("b", O_RDONLY);
    check(b >= 0 && pread(b, buf, 6, 0) == 6 && !memcmp(buf, "hello!", 6), "seen through b");
    check(fstat(sp, &ss) == 0 && ss.st_size == 200 * MiB && ss.st_nlink == 0, "sp size %ld", (long)ss.st_size);
    check(ss.st_blocks * 512 < 4 * MiB, "sp is sparse (%ld blocks)", (long)ss.st_blocks);
    check(lseek(sp, 0, SEEK_CUR) == 12345, "sp offset");
    check(pread(sp, buf, 4, 0) == 4 && !memcmp(buf, "head", 4), "head");
    check(pread(sp, buf, 3, 100 * MiB) == 3 && !memcmp(buf, "mid", 3), "mid");
    check(pread(sp, buf, 4, 200 * MiB - 4) == 4 && !memcmp(buf, "tail", 4), "tail");
    check(pread(sp, buf, 4, 50 * MiB) == 4 && !memcmp(buf, "\0\0\0\0", 4), "hole");
    say("deleted: hard link and sparse ok\n");
    return 0;
}

/* Removed directories: "gone" held open as fd, and "wd" the working directory, both
 * removed. After the restore both are removed directories (st_nlink 0, creating in
 * them fails with ENOENT); the cwd link reads "... (deleted)". */
static int removed_dirs(void) {
    int top = open(".", O_RDONLY | O_DIRECTORY);
    check(top >= 0 && mkdir("gone", 0755) == 0 && mkdir("wd", 0700) == 0, "mkdir");
    int d = open("gone", O_RDONLY | O_DIRECTORY);
    check(d >= 0 && rmdir("gone") == 0, "rmdir gone");
    check(chdir("wd") == 0 && rmdir("../wd") == 0, "rmdir wd");
    say("ready\n");
    struct timespec ts = {0, 5 * 1000 * 1000};
    while (faccessat(top, "go", F_OK, 0) != 0) nanosleep(&ts, NULL);
    struct stat sd, sc;
    check(fstat(d, &sd) == 0 && S_ISDIR(sd.st_mode) && sd.st_nlink == 0, "fd is a removed directory");
    check(stat(".", &sc) == 0 && S_ISDIR(sc.st_mode) && sc.st_nlink == 0, "cwd is a removed directory");
    errno = 0;
    check(openat(d, "x", O_CREAT | O_WRONLY, 0600) == -1 && errno == ENOENT, "nothing can be made in it");
    char link[4096] = {0};
    check(readlink("/proc/self/cwd", link, sizeof link - 1) > 0 && strstr(link, " (deleted)"), "cwd link %s", link);
    say("removed dirs: fd and cwd ok\n");
    return 0;
}

/* A FIFO removed while open by a reader and a writer, with data in flight: after the
 * restore both are one removed FIFO again, the data there and flowing. */
static int removed_fifo(void) {
    check(mkfifo("df", 0600) == 0, "mkfifo");
    int r = open("df", O_RDONLY | O_NONBLOCK), w = open("df", O_WRONLY);
    check(r >= 0 && w >= 0 && write(w, "gone-data", 9) == 9, "fill");
    check(unlink("df") == 0, "unlink");
    say("ready\n");
    wait_for_go();
    struct stat sr, sw;
    check(fstat(r, &sr) == 0 && fstat(w, &sw) == 0, "fstat");
    check(S_ISFIFO(sr.st_mode) && sr.st_nlink == 0 && sr.st_ino == sw.st_ino, "one removed FIFO");
    char b[16] = {0};
    check(read(r, b, sizeof b) == 9 && !memcmp(b, "gone-data", 9), "data in flight");
    check(write(w, "more", 4) == 4 && read(r, b, sizeof b) == 4 && !memcmp(b, "more", 4), "flows");
    check(fcntl(r, F_GETFL) & O_NONBLOCK, "reader non-blocking");
    say("removed fifo: data and flow ok\n");
    return 0;
}

/* One read-write FIFO description with data in flight shared across fork: the child
 * reads the data after the restore, the parent then sees the FIFO empty. */
static int fifo_fork(void) {
    check(mkfifo("ff", 0600) == 0, "mkfifo");
    int f = open("ff", O_RDWR | O_NONBLOCK);
    check(f >= 0 && write(f, "shared", 6) == 6, "fill");
    pid_t c = fork();
    check(c >= 0, "fork");
    if (c == 0) {
        wait_for_go();
        char b[8];
        _exit(read(f, b, sizeof b) == 6 && !memcmp(b, "shared", 6) ? 0 : 3);
    }
    FILE *pf = fopen("pids", "w");
    fprintf(pf, "%d %d\n", getpid(), c);
    fclose(pf);
    say("ready\n");
    wait_for_go();
    int st;
    check(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child read the data (status %d)", st);
    char b[8];
    errno = 0;
    check(read(f, b, sizeof b) == -1 && errno == EAGAIN, "empty after the child read it");
    say("fifo_fork: shared description with its data ok\n");
    return 0;
}

int main(int argc, char **argv) {
    check(argc > 1, "usage: files_breadth MODE");
    const char *m = argv[1];
    int r = 1;
    if (!strcmp(m, "pipe_eof")) r = pipe_eof();
    else if (!strcmp(m, "pipe_epipe")) r = pipe_epipe();
    else if (!strcmp(m, "high_fd")) r = high_fd();
    else if (!strcmp(m, "paths")) r = paths();
    else if (!strcmp(m, "fifos")) r = fifos();
    else if (!strcmp(m, "owner")) r = owner();
    else if (!strcmp(m, "leases")) r = leases();
    else if (!strcmp(m, "deleted")) r = deleted(0);
    else if (!strcmp(m, "rmdirs")) r = removed_dirs();
    else if (!strcmp(m, "rmfifo")) r = removed_fifo();
    else if (!strcmp(m, "fifo_fork")) r = fifo_fork();
    else if (!strcmp(m, "farlink")) r = deleted(1);
    else check(0, "unknown mode %s", m);
    say("done\n");
    return r;
}
