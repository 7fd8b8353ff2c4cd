/* Holds a POSIX message queue (unlinked at once, so nothing is left behind when it
 * ends) and sleeps: spirit must refuse it, not take it for a deleted file. */
#include "files_common.h"
#include <mqueue.h>

int main(int argc, char **argv) {
    char name[64];
    snprintf(name, sizeof name, "/spirit-test-%d", getpid());
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
    if (q == (mqd_t)-1) {
        say("SKIP mq_open: %s\n", strerror(errno));
        return 0;
    }
    mq_unlink(name);
    check(mq_send(q, "hello", 5, 1) == 0, "mq_send");
    say("ready fd=%d\n", (int)q);
    for (;;) pause();
}
