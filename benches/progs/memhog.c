/* Touches argv[1] MiB of random (incompressible) memory, writes "ready\n" to the file
 * argv[2], then idles. On SIGUSR1 it writes the memory's checksum to argv[2]. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t *mem;
static size_t words;
static const char *out;
static volatile sig_atomic_t want;

static void on_usr1(int s) { (void)s; want = 1; }

static void say(const char *s) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) { if (write(fd, s, strlen(s)) < 0) {} close(fd); }
}

int main(int argc, char **argv) {
    size_t mib = strtoul(argv[1], 0, 10);
    out = argv[2];
    words = mib << 17;
    mem = mmap(0, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < words; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; mem[i] = x; }
    signal(SIGUSR1, on_usr1);
    say("ready\n");
    for (;;) {
        pause();
        if (want) {
            want = 0;
            uint64_t sum = 0;
            for (size_t i = 0; i < words; i++) sum = sum * 31 + mem[i];
            char buf[64];
            snprintf(buf, sizeof buf, "sum %016llx\n", (unsigned long long)sum);
            say(buf);
        }
    }
}
