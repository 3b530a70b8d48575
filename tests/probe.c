/* isobench-probe: what busybox cannot ask from inside a container (built static by the tests).
 *
 *   isobench-probe keyring               session keyring serial, or the errno keyctl got
 *   isobench-probe userns                unshare(CLONE_NEWUSER): 0 or errno
 *   isobench-probe node c|b MAJ MIN PATH mknod, then open read and write: 0 or errno each
 *                                        (keys prefixed with c_ or b_)
 *   isobench-probe ids                   real and effective uid (a setuid copy shows what it grants)
 *   isobench-probe open PATH             open an existing node read-only: 0 or errno
 *
 * Prints one "ISOBENCH RESULT key=value" line per fact on fd 3 (the marker channel)
 * when it is open, else on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static FILE *out;

static const char *prefix = "";

static void result(const char *key, long value) {
    fprintf(out, "ISOBENCH RESULT %s%s=%ld\n", prefix, key, value);
}

static long rc(long r) { return r < 0 ? errno : 0; }

int main(int argc, char **argv) {
    out = fcntl(3, F_GETFD) >= 0 ? fdopen(3, "w") : stdout;
    if (argc >= 2 && strcmp(argv[1], "keyring") == 0) {
        long id = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
        if (id < 0)
            result("keyring_errno", errno);
        else
            result("keyring", id);
    } else if (argc >= 2 && strcmp(argv[1], "userns") == 0) {
        result("userns", rc(unshare(CLONE_NEWUSER)));
    } else if (argc >= 6 && strcmp(argv[1], "node") == 0) {
        mode_t kind = argv[2][0] == 'b' ? S_IFBLK : S_IFCHR;
        prefix = kind == S_IFBLK ? "b_" : "c_";
        dev_t dev = makedev(atoi(argv[3]), atoi(argv[4]));
        result("mknod", rc(mknod(argv[5], kind | 0600, dev)));
        int fd = open(argv[5], O_RDONLY | O_NONBLOCK);
        result("open_read", fd < 0 ? errno : 0);
        if (fd >= 0) close(fd);
        fd = open(argv[5], O_WRONLY | O_NONBLOCK);
        result("open_write", fd < 0 ? errno : 0);
        if (fd >= 0) close(fd);
        unlink(argv[5]);
    } else if (argc >= 2 && strcmp(argv[1], "ids") == 0) {
        result("uid", getuid());
        result("euid", geteuid());
    } else if (argc >= 3 && strcmp(argv[1], "open") == 0) {
        int fd = open(argv[2], O_RDONLY | O_NONBLOCK);
        result("open", fd < 0 ? errno : 0);
        if (fd >= 0) close(fd);
    } else {
        fprintf(stderr, "usage: isobench-probe keyring | userns | node c|b MAJ MIN PATH | ids | open PATH\n");
        return 2;
    }
    fflush(out);
    return 0;
}
