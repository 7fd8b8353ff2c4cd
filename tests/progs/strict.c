/* Seccomp strict mode: argv[1] is the log, argv[2] a FIFO it opens read-write. It logs
 * "ready", enters SECCOMP_MODE_STRICT (only read, write, exit and sigreturn remain),
 * then reads the FIFO a byte at a time: a byte 'k' makes it call getpid (which strict
 * mode answers with SIGKILL); any other byte is logged as "got C". */
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 1;
    int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    int fifo = open(argv[2], O_RDWR);
    if (log < 0 || fifo < 0) return 2;
    if (write(log, "ready\n", 6) != 6) return 3;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) != 0) return 4;
    for (;;) {
        char c, line[6] = { 'g', 'o', 't', ' ', 0, '\n' };
        if (syscall(SYS_read, fifo, &c, 1) != 1) continue;
        if (c == 'k') syscall(SYS_getpid);
        line[4] = c;
        syscall(SYS_write, log, line, 6);
    }
}
