/* A file deleted while open. Mode "small": 100000 patterned bytes, opened O_RDWR,
 * offset 1234, then unlinked. After the restore ("go") the program checks that the
 * file is still unlinked (st_nlink 0, "(deleted)" link), has the same size, offset
 * and content, and is writable. Mode "big": a 65 MiB deleted file with every block
 * allocated (not sparse), more than the checkpoint stores (it must be refused). */
#include "files_common.h"
#include <sys/stat.h>

#define N 100000
static unsigned char pat(int i) { return (unsigned char)(i * 13 + i / 97); }

int main(int argc, char **argv) {
    int fd = open("scratch", O_RDWR | O_CREAT | O_TRUNC, 0640);
    check(fd >= 0, "open scratch");
    if (argc > 1 && strcmp(argv[1], "big") == 0) {
        check(fallocate(fd, 0, 0, 65 << 20) == 0, "fallocate");
        check(unlink("scratch") == 0, "unlink");
        say("ready\n");
        for (;;) pause();
    }
    static unsigned char buf[N];
    for (int i = 0; i < N; i++) buf[i] = pat(i);
    check(write(fd, buf, N) == N, "write");
    check(lseek(fd, 1234, SEEK_SET) == 1234, "lseek");
    check(unlink("scratch") == 0, "unlink");
    char cwd[512];
    check(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    say("ready\n");
    wait_for_go();
    struct stat st;
    check(fstat(fd, &st) == 0, "fstat");
    char link[600] = {0}, proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    check(readlink(proc, link, sizeof link - 1) > 0, "readlink");
    say("nlink=%lu size=%lld mode=%o pos=%lld\n", (unsigned long)st.st_nlink, (long long)st.st_size,
        st.st_mode & 07777, (long long)lseek(fd, 0, SEEK_CUR));
    say("in original dir=%d deleted=%d\n", strncmp(link, cwd, strlen(cwd)) == 0,
        strstr(link, " (deleted)") != NULL);
    static unsigned char got[N];
    check(read(fd, got, 10) == 10, "read at offset");
    for (int i = 0; i < 10; i++) check(got[i] == pat(1234 + i), "byte %d at offset", i);
    check(pread(fd, got, N, 0) == N, "pread");
    for (int i = 0; i < N; i++) check(got[i] == pat(i), "byte %d differs", i);
    check(write(fd, "xyz", 3) == 3, "write");
    say("content intact, writable\n");
    say("done\n");
    return 0;
}
