/* A process holding a POSIX message queue for the external mqueue plugin's test.
 * argv[1]: the queue's name ("/..."); argv[2]: "unlinked" (unlink it after filling),
 * "named" (keep the name) or "notify" (also register mq_notify, which spirit-mqueue
 * refuses). The queue: maxmsg 7, msgsize 64, O_NONBLOCK, fd 3 close-on-exec off; three
 * messages of priorities 1, 9, 5. Says "ready", waits for ./go (after the restore),
 * then reports the attributes and the messages in the order it receives them. */
#include "files_common.h"
#include <mqueue.h>
#include <signal.h>

int main(int argc, char **argv) {
    check(argc == 3, "usage: mqueue_holder NAME unlinked|named|notify");
    const char *name = argv[1], *mode = argv[2];
    struct mq_attr a = {.mq_maxmsg = 7, .mq_msgsize = 64};
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0640, &a);
    check(q >= 0, "mq_open %s", name);
    if (q != 3) { check(dup2(q, 3) == 3, "dup2"); close(q); q = 3; }
    check(mq_send(q, "low", 3, 1) == 0, "send low");
    check(mq_send(q, "high!", 5, 9) == 0, "send high");
    check(mq_send(q, "middle", 6, 5) == 0, "send middle");
    if (strcmp(mode, "unlinked") == 0) check(mq_unlink(name) == 0, "mq_unlink");
    if (strcmp(mode, "notify") == 0) {
        struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
        check(mq_notify(q, &ev) == 0, "mq_notify");
    }
    say("ready\n");
    wait_for_go();
    check(mq_getattr(q, &a) == 0, "mq_getattr");
    say("attr maxmsg=%ld msgsize=%ld curmsgs=%ld nonblock=%d\n", a.mq_maxmsg, a.mq_msgsize,
        a.mq_curmsgs, (a.mq_flags & O_NONBLOCK) != 0);
    say("cloexec=%d\n", (fcntl(q, F_GETFD) & FD_CLOEXEC) != 0);
    char link[256] = {0};
    check(readlink("/proc/self/fd/3", link, sizeof link - 1) > 0, "readlink");
    say("link %s\n", link);
    for (int i = 0; i < 3; i++) {
        char buf[64] = {0};
        unsigned prio = 0;
        ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
        check(n >= 0, "mq_receive %d", i);
        say("msg prio=%u %.*s\n", prio, (int)n, buf);
    }
    char buf[64];
    errno = 0;
    say("then %s\n", mq_receive(q, buf, sizeof buf, NULL) < 0 && errno == EAGAIN ? "EAGAIN" : "something");
    if (strcmp(mode, "named") == 0) mq_unlink(name);
    say("done\n");
    return 0;
}
