/* Opens the terminal device argv[1] (O_NOCTTY, never written to) at fd 3, says "ready"
 * on standard output and sleeps: a process holding a console or a serial line. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) { perror(argv[1]); return 1; }
    if (fd != 3 && (dup2(fd, 3) < 0 || close(fd) < 0)) { perror("dup2"); return 1; }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
