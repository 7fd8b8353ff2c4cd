/* One message queue shared by a parent and its child, for the external mqueue plugin's
 * tree test. argv[1]: the queue's name. The parent opens it read-write non-blocking at
 * fd 3, sends "a" (priority 1) and "b" (9), opens it again read-only and blocking at
 * fd 4, unlinks it and forks; the child inherits both. Both say "ready" and wait for
 * ./go; then the child sends "from child" (5) through fd 3 and exits, and the parent
 * reports what fd 4 sees: one queue, so three messages, the child's among them. */
#include "files_common.h"
#include <mqueue.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    check(argc == 2, "usage: mqueue_tree NAME");
    struct mq_attr a = {.mq_maxmsg = 7, .mq_msgsize = 64};
    mqd_t q = mq_open(argv[1], O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &a);
    check(q == 3, "mq_open at fd 3 (got %d)", q);
    check(mq_send(q, "a", 1, 1) == 0 && mq_send(q, "b", 1, 9) == 0, "send");
    mqd_t r = mq_open(argv[1], O_RDONLY);
    check(r == 4, "second mq_open at fd 4 (got %d)", r);
    check(mq_unlink(argv[1]) == 0, "mq_unlink");
    pid_t child = fork();
    check(child >= 0, "fork");
    if (child == 0) {
        say("child ready\n");
        wait_for_go();
        check(mq_send(q, "from child", 10, 5) == 0, "child send");
        say("child sent\n");
        return 0;
    }
    say("ready\n");
    wait_for_go();
    int st = 0;
    check(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
    check(mq_getattr(r, &a) == 0, "mq_getattr");
    say("fd4 curmsgs=%ld nonblock=%d\n", a.mq_curmsgs, (a.mq_flags & O_NONBLOCK) != 0);
    check(mq_getattr(q, &a) == 0, "mq_getattr 3");
    say("fd3 nonblock=%d\n", (a.mq_flags & O_NONBLOCK) != 0);
    errno = 0;
    say("fd4 send %s\n", mq_send(r, "x", 1, 0) < 0 && errno == EBADF ? "EBADF" : "allowed");
    for (int i = 0; i < 3; i++) {
        char buf[64] = {0};
        unsigned prio = 0;
        ssize_t n = mq_receive(r, buf, sizeof buf, &prio);
        check(n >= 0, "mq_receive %d", i);
        say("msg prio=%u %.*s\n", prio, (int)n, buf);
    }
    say("done\n");
    return 0;
}
