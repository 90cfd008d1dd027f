/* daemon/lock.c: one process per data directory; the refusal names the holder's PID. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lock.h"

static void test_second_process_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/samda-test-lock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    unsigned mode;
    samda_error err;
    assert_int_equal(samda_mkdir_p(sub, &mode, &err), SAMDA_OK);
    assert_int_equal(mode, 0700);

    int sync_pipe[2];
    assert_int_equal(pipe(sync_pipe), 0);
    pid_t child = fork();
    if (child == 0) {
        int fd;
        if (samda_datadir_lock(sub, NULL, &fd, NULL) != SAMDA_OK) _exit(1);
        (void)!write(sync_pipe[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    assert_int_equal(read(sync_pipe[0], &c, 1), 1);
    int fd = -1;
    assert_int_equal(samda_datadir_lock(sub, NULL, &fd, &err), SAMDA_ELOCKED);
    char want[64];
    snprintf(want, sizeof want, "PID %ld", (long)child);
    assert_non_null(strstr(err.message, want));
    /* the holder dies (kill -9): the lock goes with it */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(samda_datadir_lock(sub, NULL, &fd, &err), SAMDA_OK);
    close(fd);

    /* Nodes of a cluster share the directory: one lock per node name. */
    child = fork();
    if (child == 0) {
        int nfd;
        if (samda_datadir_lock(sub, "node-a", &nfd, NULL) != SAMDA_OK) _exit(1);
        (void)!write(sync_pipe[1], "x", 1);
        pause();
        _exit(0);
    }
    assert_int_equal(read(sync_pipe[0], &c, 1), 1);
    assert_int_equal(samda_datadir_lock(sub, "node-a", &fd, &err), SAMDA_ELOCKED);
    assert_non_null(strstr(err.message, "as node node-a"));
    assert_int_equal(samda_datadir_lock(sub, "node-b", &fd, &err), SAMDA_OK);
    close(fd);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_second_process_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
