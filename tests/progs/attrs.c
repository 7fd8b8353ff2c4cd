/* Sets process attributes a restore must give back, then, every 20 ms, appends
 * "N nice=.. policy=.. cpus=.. slack=.. sub=.. thp=.. io=.." to the log (argv[1]): its own view
 * of them, so lines written after a restore show what the restored process sees. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return 1;
    if (setpriority(PRIO_PROCESS, 0, 7)) return 2;
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp)) return 3;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set)) return 4;
    if (prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0)) return 5;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) return 6;
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) return 7;
    /* IOPRIO_CLASS_BE (2) << 13 | level 6 */
    if (syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 6)) return 8;
    int oom = open("/proc/self/oom_score_adj", O_WRONLY);
    if (oom < 0 || write(oom, "123", 3) != 3) return 9;
    close(oom);
    struct timespec ts = {0, 20 * 1000000L};
    char buf[256];
    for (unsigned long i = 0;; i++) {
        int sub = 0;
        prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
        CPU_ZERO(&set);
        sched_getaffinity(0, sizeof set, &set);
        int n = snprintf(buf, sizeof buf,
                         "%lu nice=%d policy=%d cpus=%d slack=%d sub=%d thp=%d io=%ld\n", i,
                         getpriority(PRIO_PROCESS, 0), sched_getscheduler(0), CPU_COUNT(&set),
                         prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), sub,
                         prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0),
                         syscall(SYS_ioprio_get, 1, 0));
        if (write(fd, buf, n) != n) return 10;
        nanosleep(&ts, NULL);
    }
}
