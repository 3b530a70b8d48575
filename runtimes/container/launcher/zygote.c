/*
 * isobench's native zygote: forks container inits on request, and runs their whole setup in C.
 *
 * Why C: the Python zygote's child ran init.child_main in Python.  Every page the interpreter
 * touches after the fork is a copy-on-write fault, and the exec out of that address space is
 * slow (fork of a small Python process + execv: 2.75 ms median here; posix_spawn: 0.67 ms).
 * This program has the same role and protocol as zygote_server.py (read that first), and its
 * child does what init.child_main/_init/harden do, reporting the same lines on the status pipe,
 * so the host side (init.read_status, the phase table) is unchanged.
 *
 * Usage (started by runtimes/container/launcher/zygote.py, never by hand):
 *     isobench-zygote SOCKET_FD HARNESS_PID PDEATHSIG(0|1)
 *
 * Requests arrive on a SOCK_SEQPACKET socket, one message each; the encoding is made by
 * runtimes/container/launcher/wire.py: the first byte is the kind, then records (u8 tag, u32 length
 * little-endian, payload).  Strings are sent with their NUL, so the payload is used in place.
 *   'T': prepare a shared root: 'p' plan number, 'S' shared mount ops, 'I' per-container ops.
 *        Answer "T 1" or "T 0 <why not>".
 *   'L': launch, with 5 fds (stdin, stdout, stderr, marker, status pipe) in SCM_RIGHTS.
 *        Answer "P <pid> <t_fork> <born_in_cgroup> <prepared_root>" or "E <message>".
 * Mount ops are primitives (wire.py lowers mounts.MountOp to them), each with its describe()
 * text so that a failure names the plan step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <grp.h>

#ifndef SYS_clone3
#define SYS_clone3 435 /* the same number on every architecture (asm-generic) */
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define CLONE_INTO_CGROUP_FLAG 0x200000000ULL
#define MAX_REQUEST (1 << 20)
#define REQUEST_FDS 5
#define MAX_ITEMS 512 /* argv, env, ops, attach files, signals, rlimits: each */
#define MAX_PLANS 64
#define MAX_GROUPS 256 /* supplementary groups of an image's user */
#define STATUS_FD 4   /* init.STATUS_FD */
#define MOUNT_NS_FD 5 /* init.MOUNT_NS_FD */
#define MARKER_FD 3   /* workloads.MARKER_FD */

/* mount primitives and their conditions: prims.py has the same numbers (wire.py sends them);
 * these defines and enums are checked against Python's by tests/test_wire.py */
enum { P_MOUNT = 1, P_MKDIR, P_SYMLINK, P_MKNOD, P_CREATE, P_PIVOT };
enum { C_ALWAYS = 0, C_EXISTS, C_IS_DIR, C_EXISTS_NOT_DIR };

struct op {
    uint8_t prim, cond;
    uint64_t flags;
    uint32_t mode;
    uint64_t dev;
    const char *desc, *src, *dst, *fstype, *data; /* NULL where the wire had an empty string */
};

struct ops {
    struct op *v;
    int n;
};

struct rlim {
    int32_t resource;
    int64_t soft, hard;
};

struct config {
    uint64_t ns_flags, keep_caps;
    uint32_t last_cap;
    uint8_t cgroupns, die_with_parent, session_keyring, has_oom;
    int32_t oom_score_adj;
    const char *argv[MAX_ITEMS + 1], *env[MAX_ITEMS + 1];
    int argc, envc;
    const char *hostname, *cwd, *cgroup_dir;
    const char *attach[MAX_ITEMS];
    int nattach;
    const uint8_t *lo_request, *seccomp;
    uint32_t lo_len, seccomp_len;
    int32_t signals[MAX_ITEMS];
    int nsignals;
    struct rlim rlimits[MAX_ITEMS];
    int nrlimits;
    int64_t plan; /* a prepared plan's number, or -1 */
    struct ops ops;
    uint8_t has_user, no_marker; /* 'u': switch to uid/gid/groups; 'n': fd 3 is close-on-exec */
    uint32_t uid, gid, ngroups;
    gid_t groups[MAX_GROUPS];
};

/* a prepared root: the fd of its mount namespace and the per-container ops */
struct plan {
    int used, ns_fd; /* ns_fd -1: could not be prepared */
    struct ops instance;
};

static struct plan plans[MAX_PLANS];
static int into_cgroup = 1; /* until the kernel refuses CLONE_INTO_CGROUP */

/* ---------------------------------------------------------------- decoding */

static uint32_t u32at(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64at(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* A string field: u32 length (with its NUL) then the bytes; length 0 means NULL.  Returns the
 * position after it, or NULL when the field does not fit or is not NUL-terminated. */
static const uint8_t *str_field(const uint8_t *p, const uint8_t *end, const char **out) {
    if (end - p < 4) return NULL;
    uint32_t n = u32at(p);
    p += 4;
    if ((uint64_t)(end - p) < n || (n > 0 && p[n - 1] != 0)) return NULL;
    *out = n ? (const char *)p : NULL;
    return p + n;
}

/* One mount op record: u8 prim, u8 cond, u64 flags, u32 mode, u64 dev, then 5 strings. */
static int parse_op(const uint8_t *p, uint32_t len, struct ops *ops) {
    const uint8_t *end = p + len;
    if (len < 22 || ops->n >= MAX_ITEMS) return -1;
    struct op *o = &ops->v[ops->n];
    o->prim = p[0];
    o->cond = p[1];
    o->flags = u64at(p + 2);
    o->mode = u32at(p + 10);
    o->dev = u64at(p + 14);
    p += 22;
    const char **fields[] = {&o->desc, &o->src, &o->dst, &o->fstype, &o->data};
    for (size_t i = 0; i < 5; i++)
        if (!(p = str_field(p, end, fields[i]))) return -1;
    if (!o->desc || !o->dst) return -1;
    ops->n++;
    return 0;
}

static const char *cstr(const uint8_t *p, uint32_t len) {
    return len > 0 && p[len - 1] == 0 ? (const char *)p : NULL;
}

/* Walk the records of a request; calls `each` per record.  -1 on a malformed message. */
typedef int (*record_fn)(void *ctx, uint8_t tag, const uint8_t *p, uint32_t len);
static int walk(const uint8_t *msg, size_t size, record_fn each, void *ctx) {
    size_t off = 1;
    while (off < size) {
        if (size - off < 5) return -1;
        uint8_t tag = msg[off];
        uint32_t len = u32at(msg + off + 1);
        off += 5;
        if (size - off < len || each(ctx, tag, msg + off, len) < 0) return -1;
        off += len;
    }
    return 0;
}

static int config_record(void *ctx, uint8_t tag, const uint8_t *p, uint32_t len) {
    struct config *c = ctx;
    const char *s = cstr(p, len);
    switch (tag) {
    case 'F': /* u64 ns_flags, u64 keep_caps, u32 last_cap, 4 x u8, i32 oom_score_adj */
        if (len != 28) return -1;
        c->ns_flags = u64at(p);
        c->keep_caps = u64at(p + 8);
        c->last_cap = u32at(p + 16);
        c->cgroupns = p[20];
        c->die_with_parent = p[21];
        c->session_keyring = p[22];
        c->has_oom = p[23];
        memcpy(&c->oom_score_adj, p + 24, 4);
        return 0;
    case 'a': if (!s || c->argc >= MAX_ITEMS) return -1; c->argv[c->argc++] = s; return 0;
    case 'e': if (!s || c->envc >= MAX_ITEMS) return -1; c->env[c->envc++] = s; return 0;
    case 'h': c->hostname = s; return s ? 0 : -1;
    case 'c': c->cwd = s; return s ? 0 : -1;
    case 'd': c->cgroup_dir = s; return s ? 0 : -1;
    case 't': if (!s || c->nattach >= MAX_ITEMS) return -1; c->attach[c->nattach++] = s; return 0;
    case 'l': c->lo_request = p; c->lo_len = len; return 0;
    case 's': c->seccomp = p; c->seccomp_len = len; return 0;
    case 'k':
        if (len != 4 || c->nsignals >= MAX_ITEMS) return -1;
        memcpy(&c->signals[c->nsignals++], p, 4);
        return 0;
    case 'r':
        if (len != 20 || c->nrlimits >= MAX_ITEMS) return -1;
        memcpy(&c->rlimits[c->nrlimits].resource, p, 4);
        memcpy(&c->rlimits[c->nrlimits].soft, p + 4, 8);
        memcpy(&c->rlimits[c->nrlimits++].hard, p + 12, 8);
        return 0;
    case 'p': if (len != 4) return -1; c->plan = u32at(p); return 0;
    case 'm': return parse_op(p, len, &c->ops);
    case 'u': /* u32 uid, u32 gid, then u32 per supplementary group */
        if (len < 8 || (len - 8) % 4 || (len - 8) / 4 > MAX_GROUPS) return -1;
        c->has_user = 1;
        c->uid = u32at(p);
        c->gid = u32at(p + 4);
        c->ngroups = (len - 8) / 4;
        for (uint32_t i = 0; i < c->ngroups; i++) c->groups[i] = (gid_t)u32at(p + 8 + 4 * i);
        return 0;
    case 'n': if (len != 0) return -1; c->no_marker = 1; return 0;
    default: return -1;
    }
}

struct prepare_req {
    int64_t number;
    struct ops shared, instance;
};

static int prepare_record(void *ctx, uint8_t tag, const uint8_t *p, uint32_t len) {
    struct prepare_req *r = ctx;
    switch (tag) {
    case 'p': if (len != 4) return -1; r->number = u32at(p); return 0;
    case 'S': return parse_op(p, len, &r->shared);
    case 'I': return parse_op(p, len, &r->instance);
    default: return -1;
    }
}

/* ---------------------------------------------------------------- the mount primitives */

/* Does the op's condition hold?  (mounts.ReadOnly: lexists; mounts.Mask: isdir, else lexists) */
static int cond_holds(const struct op *o) {
    struct stat st;
    int exists = o->cond == C_ALWAYS || lstat(o->dst, &st) == 0;
    int is_dir = o->cond >= C_IS_DIR && stat(o->dst, &st) == 0 && S_ISDIR(st.st_mode);
    switch (o->cond) {
    case C_ALWAYS: return 1;
    case C_EXISTS: return exists;
    case C_IS_DIR: return is_dir;
    case C_EXISTS_NOT_DIR: return exists && !is_dir;
    default: return 1;
    }
}

/* Run one primitive; -1 with errno set on failure. */
static int run_op(const struct op *o) {
    int fd;
    if (!cond_holds(o)) return 0;
    switch (o->prim) {
    case P_MOUNT: return mount(o->src, o->dst, o->fstype, (unsigned long)o->flags, o->data);
    case P_MKDIR: return mkdir(o->dst, o->mode);
    case P_SYMLINK: return symlink(o->src, o->dst);
    case P_MKNOD:
        if (mknod(o->dst, o->mode, (dev_t)o->dev) < 0) return -1;
        return chmod(o->dst, o->mode & 07777); /* the umask must not narrow it */
    case P_CREATE:
        if ((fd = open(o->dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0666)) < 0) return -1;
        return close(fd);
    case P_PIVOT: /* pivot_root(".", ".") stacks the old root on the new; the detach removes it */
        if (chdir(o->dst) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0) return -1;
        return chdir("/");
    default: errno = EINVAL; return -1;
    }
}

/* Run a list of primitives; on failure, the message (as mounts.execute words it) in `err`. */
static int run_ops(const struct ops *ops, char *err, size_t errlen) {
    for (int i = 0; i < ops->n; i++) {
        if (run_op(&ops->v[i]) < 0) {
            snprintf(err, errlen, "mount plan step '%s' failed: %s", ops->v[i].desc, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the child (container init) */

static int status_fd = -1;

static void mark(const char *step) {
    struct timespec ts;
    char line[96];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(line, sizeof line, "T %s %lld\n", step, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    if (write(status_fd, line, (size_t)n) < 0) _exit(127); /* the host is gone: nothing to report to */
}

/* Report "E <message>" and exit 127, as init.child_main does for any exception. */
__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
    char line[4096] = "E ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + 2, sizeof line - 3, fmt, ap);
    va_end(ap);
    for (char *q = line; *q; q++)
        if (*q == '\n') *q = ' ';
    strcat(line, "\n");
    if (write(status_fd, line, strlen(line)) < 0) _exit(127);
    _exit(127);
}

/* stdin, stdout, stderr, marker -> 0..3 (inherited; the marker only when `marker`); status,
 * mount ns -> 4, 5 (close-on-exec); everything else (the zygote's socket, other requests'
 * nothing) closed.  As init._arrange_fds. */
static void arrange_fds(const int *fds, int n, int marker) {
    int high[REQUEST_FDS + 1];
    for (int i = 0; i < n; i++) /* lift first: a source may sit on a target number */
        if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 64)) < 0) die("F_DUPFD_CLOEXEC: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        int inherit = i < MARKER_FD || (i == MARKER_FD && marker);
        if (dup3(high[i], i, inherit ? 0 : O_CLOEXEC) < 0) die("dup3(%d): %s", i, strerror(errno));
        if (i == STATUS_FD) status_fd = STATUS_FD;
    }
    if (syscall(SYS_close_range, n, ~0U, 0) < 0) { /* before 5.9: one by one */
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = n; fd < max; fd++) close((int)fd);
    }
}

/* Into the instance cgroup first: writing "0" moves this single thread (see init._join_cgroup) */
static void join_cgroup(const struct config *c) {
    for (int i = 0; i < c->nattach; i++) {
        int fd = open(c->attach[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            die("cannot join the instance cgroup (%s): %s", c->attach[i], strerror(errno));
        close(fd);
    }
}

/* Send the precomputed RTM_NEWLINK (namespaces.loopback_up_request) and read the ack. */
static void loopback_up(const struct config *c) {
    uint8_t reply[4096];
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0) die("bringing lo up: socket: %s", strerror(errno));
    if (send(s, c->lo_request, c->lo_len, 0) < 0) die("bringing lo up: %s", strerror(errno));
    ssize_t n = recv(s, reply, sizeof reply, 0);
    close(s);
    if (n < (ssize_t)(sizeof(struct nlmsghdr) + 4)) die("bringing lo up: short netlink reply");
    struct nlmsghdr h;
    int32_t error;
    memcpy(&h, reply, sizeof h);
    memcpy(&error, reply + sizeof h, 4);
    if (h.nlmsg_type != NLMSG_ERROR) die("bringing lo up: unexpected netlink reply type %d", h.nlmsg_type);
    if (error != 0) die("bringing lo up: %s", strerror(-error));
}

/* rlimits, oom_score_adj, session keyring, capabilities, no_new_privs, signal mask, cwd:
 * as init.harden (seccomp comes after it). */
static void harden(const struct config *c) {
    for (int i = 0; i < c->nrlimits; i++) {
        const struct rlim *r = &c->rlimits[i];
        struct rlimit rl = {(rlim_t)r->soft, (rlim_t)r->hard};
        if (setrlimit(r->resource, &rl) < 0)
            die("setrlimit(%d, %lld, %lld): %s", r->resource, (long long)r->soft, (long long)r->hard, strerror(errno));
    }
    if (c->has_oom) {
        char v[16];
        int n = snprintf(v, sizeof v, "%d", c->oom_score_adj);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, v, (size_t)n) != n)
            die("writing oom_score_adj %d: %s", c->oom_score_adj, strerror(errno));
        close(fd);
    }
    if (c->session_keyring && syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0L, 0L, 0L, 0L) < 0)
        die("keyctl(1): %s", strerror(errno));
    /* the bounding set first: dropping from it needs CAP_SETPCAP, which capset may remove */
    for (uint32_t cap = 0; cap <= c->last_cap && cap < 64; cap++)
        if (!(c->keep_caps >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            die("prctl(%d, %u): %s", PR_CAPBSET_DROP, cap, strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        die("prctl(%d, %d): %s", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, strerror(errno));
    struct { uint32_t version; int pid; } hdr = {0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0};
    struct { uint32_t effective, permitted, inheritable; } data[2];
    for (int i = 0; i < 2; i++) {
        uint32_t half = (uint32_t)(c->keep_caps >> (32 * i));
        data[i].effective = data[i].permitted = half;
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        die("capset(%#llx, %#llx, 0x0): %s", (unsigned long long)c->keep_caps,
            (unsigned long long)c->keep_caps, strerror(errno));
    if (c->has_user) { /* an image's User: needs CAP_SETGID/CAP_SETUID, both kept above */
        if (setgroups(c->ngroups, c->groups) < 0) die("setgroups(%u groups): %s", c->ngroups, strerror(errno));
        if (setgid(c->gid) < 0) die("setgid(%u): %s", c->gid, strerror(errno));
        if (setuid(c->uid) < 0) die("setuid(%u): %s", c->uid, strerror(errno));
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("prctl(%d, 1): %s", PR_SET_NO_NEW_PRIVS, strerror(errno));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (chdir(c->cwd ? c->cwd : "/") < 0)
        die("cannot change to the working directory %s: %s", c->cwd ? c->cwd : "/", strerror(errno));
}

/* stdin becomes the container's own /dev/null, in place of the harness's empty pipe: nothing of
 * the host's /dev is ever one of its fds (as init._own_stdin). */
static void own_stdin(void) {
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("cannot open the container's /dev/null as stdin: %s", strerror(errno));
    if (dup2(fd, 0) < 0) die("dup2(/dev/null, 0): %s", strerror(errno));
    close(fd);
}

/* The container's PID 1 until it execs: everything init.child_main and init._init do. */
__attribute__((noreturn)) static void child_main(const struct config *c, const struct ops *ops, const int *fds,
                                                 int nfds, int born_in_cgroup, int mount_ns) {
    char err[4096];
    status_fd = fds[4];
    /* the harness's handlers are not ours; ignored signals (SIGPIPE) would stay ignored across exec */
    for (int i = 0; i < c->nsignals; i++) signal(c->signals[i], SIG_DFL);
    if (setsid() < 0) die("setsid: %s", strerror(errno));
    if (c->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        die("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
    prctl(PR_SET_NAME, "isobench-init", 0, 0, 0); /* leftovers sweeps know a stuck init by it */
    arrange_fds(fds, nfds, !c->no_marker);
    mark("init");
    if (c->nattach > 0 && !born_in_cgroup) {
        join_cgroup(c);
        mark("cgroup_attach");
    }
    if (mount_ns) { /* into the prepared root; the unshare below makes this container's own copy */
        if (setns(MOUNT_NS_FD, CLONE_NEWNS) < 0) die("setns(%d, %#x): %s", MOUNT_NS_FD, CLONE_NEWNS, strerror(errno));
        close(MOUNT_NS_FD);
    }
    /* the cgroup namespace is rooted at the instance cgroup, joined above (or born in) */
    uint64_t flags = c->ns_flags | (c->cgroupns ? CLONE_NEWCGROUP : 0);
    if (unshare((int)flags) < 0) die("unshare(%#llx): %s", (unsigned long long)flags, strerror(errno));
    mark("unshare");
    if (run_ops(ops, err, sizeof err) < 0) die("%s", err);
    own_stdin();
    mark("mounts");
    if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) < 0)
        die("sethostname('%s'): %s", c->hostname, strerror(errno));
    if (c->lo_request) loopback_up(c);
    mark("net");
    harden(c);
    mark("security");
    if (c->seccomp) { /* last: from here on only what the profile allows */
        if (c->seccomp_len == 0 || c->seccomp_len % sizeof(struct sock_filter))
            die("seccomp: a BPF program of %u bytes is malformed", c->seccomp_len);
        struct sock_fprog prog = {(unsigned short)(c->seccomp_len / sizeof(struct sock_filter)),
                                  (struct sock_filter *)(uintptr_t)c->seccomp};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
            die("loading the seccomp filter: %s", strerror(errno));
    }
    mark("exec");
    /* glibc's execvpe searches the *caller's* PATH: the workload's, as Python's os.execvpe does */
    environ = (char **)c->env;
    execvpe(c->argv[0], (char *const *)c->argv, (char *const *)c->env);
    die("cannot execute %s in the container: %s", c->argv[0], strerror(errno));
}

/* ---------------------------------------------------------------- the zygote */

struct clone_args_v2 { /* struct clone_args up to CLONE_ARGS_SIZE_VER2 (with cgroup) */
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
        cgroup;
};

static long clone3_raw(uint64_t flags, int cgroup_fd) {
    struct clone_args_v2 a;
    memset(&a, 0, sizeof a);
    a.flags = flags | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP_FLAG : 0);
    a.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
    a.exit_signal = 0; /* CLONE_PARENT: the child inherits the zygote's exit signal */
    return syscall(SYS_clone3, &a, sizeof a);
}

/* 'L': clone the container init; the reply in `reply`. */
static void launch(const uint8_t *msg, size_t size, const int *fds, char *reply, size_t rlen) {
    static struct op opv[MAX_ITEMS];
    static struct config c;
    memset(&c, 0, sizeof c);
    c.ops.v = opv;
    c.plan = -1;
    if (walk(msg, size, config_record, &c) < 0 || c.argc == 0) {
        snprintf(reply, rlen, "E malformed launch request (%zu bytes)", size);
        return;
    }
    const struct ops *ops = &c.ops;
    int child_fds[REQUEST_FDS + 1], nfds = REQUEST_FDS, prepared = 0;
    memcpy(child_fds, fds, sizeof(int) * REQUEST_FDS);
    if (c.plan >= 0) { /* below the shared root, each container runs only its own steps */
        if (c.plan >= MAX_PLANS || !plans[c.plan].used || plans[c.plan].ns_fd < 0) {
            snprintf(reply, rlen, "E unknown prepared plan %lld", (long long)c.plan);
            return;
        }
        ops = &plans[c.plan].instance;
        child_fds[nfds++] = plans[c.plan].ns_fd;
        prepared = 1;
    }
    int cg_fd = -1;
    if (c.cgroup_dir && into_cgroup) {
        if ((cg_fd = open(c.cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
            snprintf(reply, rlen, "E cannot open the cgroup %s: %s", c.cgroup_dir, strerror(errno));
            return;
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long t_fork = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    long pid = clone3_raw(CLONE_PARENT | CLONE_NEWPID, cg_fd);
    if (pid < 0 && cg_fd >= 0 && (errno == E2BIG || errno == EINVAL || errno == EOPNOTSUPP || errno == EBADF)) {
        into_cgroup = 0; /* the kernel refuses CLONE_INTO_CGROUP: the child joins by itself from now on */
        close(cg_fd);
        cg_fd = -1;
        pid = clone3_raw(CLONE_PARENT | CLONE_NEWPID, -1);
    }
    if (pid == 0) child_main(&c, ops, child_fds, nfds, cg_fd >= 0, prepared);
    int err = errno;
    if (cg_fd >= 0) close(cg_fd);
    if (pid < 0)
        snprintf(reply, rlen, "E clone3: %s", strerror(err));
    else
        snprintf(reply, rlen, "P %ld %lld %d %d", pid, t_fork, cg_fd >= 0, prepared);
}

/* Build the shared ops in a new mount namespace, in a short-lived builder child; an fd that
 * holds the namespace (as template.build).  -1 with the reason in `why`. */
static int build_template(const struct ops *shared, int sock, char *why, size_t wlen) {
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0) {
        snprintf(why, wlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        char err[2048] = "ok";
        close(sock);
        close(ready[0]);
        close(hold[1]);
        if (unshare(CLONE_NEWNS) < 0)
            snprintf(err, sizeof err, "unshare(%#x): %s", CLONE_NEWNS, strerror(errno));
        else
            run_ops(shared, err, sizeof err);
        if (write(ready[1], err, strlen(err)) < 0) _exit(1);
        char b;
        if (read(hold[0], &b, 1) < 0) _exit(1); /* keep the namespace until the zygote has its fd */
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    int fd = -1;
    if (pid < 0) {
        snprintf(why, wlen, "fork: %s", strerror(errno));
    } else {
        char buf[2048];
        ssize_t n = read(ready[0], buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        if (strcmp(buf, "ok") != 0) {
            snprintf(why, wlen, "cannot prepare the container root: %.1900s", n > 0 ? buf : "the builder died");
        } else {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int)pid);
            if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) snprintf(why, wlen, "%s: %s", path, strerror(errno));
        }
    }
    close(hold[1]); /* the builder exits */
    close(ready[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return fd;
}

/* 'T': prepare plan number N (once); the message is kept: the ops point into it. */
static void prepare(const uint8_t *msg, size_t size, int sock, char *reply, size_t rlen) {
    struct prepare_req r = {.number = -1};
    uint8_t *copy = malloc(size);
    r.shared.v = calloc(MAX_ITEMS, sizeof(struct op));
    r.instance.v = calloc(MAX_ITEMS, sizeof(struct op));
    if (!copy || !r.shared.v || !r.instance.v) {
        snprintf(reply, rlen, "T 0 out of memory");
        goto out;
    }
    memcpy(copy, msg, size);
    if (walk(copy, size, prepare_record, &r) < 0 || r.number < 0 || r.number >= MAX_PLANS) {
        snprintf(reply, rlen, "T 0 malformed prepare request (%zu bytes)", size);
        goto out;
    }
    struct plan *p = &plans[r.number];
    if (p->used) {
        snprintf(reply, rlen, "T %d", p->ns_fd >= 0);
        goto out;
    }
    char why[2048];
    int fd = build_template(&r.shared, sock, why, sizeof why);
    p->used = 1;
    p->ns_fd = fd;
    if (fd < 0) {
        snprintf(reply, rlen, "T 0 %s", why);
        goto out;
    }
    p->instance = r.instance;
    free(r.shared.v); /* the per-container ops (and the message they point into) stay */
    snprintf(reply, rlen, "T 1");
    return;
out:
    free(copy);
    free(r.shared.v);
    free(r.instance.v);
}

static void close_fds(const int *fds, int n) {
    for (int i = 0; i < n; i++) close(fds[i]);
}

static void serve(int sock) {
    static uint8_t msg[MAX_REQUEST];
    char reply[4096];
    for (;;) {
        union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * REQUEST_FDS)]; } ctrl;
        struct iovec iov = {msg, sizeof msg};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf,
                            .msg_controllen = sizeof ctrl.buf};
        ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the harness closed its end, or died */
        int fds[REQUEST_FDS], nfds = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    if (nfds < REQUEST_FDS) fds[nfds++] = fd; else close(fd);
                }
            }
        }
        if (msg[0] == 'T' && nfds == 0)
            prepare(msg, (size_t)n, sock, reply, sizeof reply);
        else if (msg[0] == 'L' && nfds == REQUEST_FDS && !(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
            launch(msg, (size_t)n, fds, reply, sizeof reply);
        else
            snprintf(reply, sizeof reply, "E bad request '%c' with %d fds", msg[0], nfds);
        close_fds(fds, nfds); /* the request's own fds (a template's fd stays) */
        for (char *q = reply; *q; q++)
            if (*q == '\n') *q = ' ';
        if (send(sock, reply, strlen(reply), MSG_NOSIGNAL) < 0) return;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SOCKET_FD HARNESS_PID PDEATHSIG(0|1)  (started by isobench)\n", argv[0]);
        return 2;
    }
    int sock = atoi(argv[1]);
    pid_t harness = (pid_t)atol(argv[2]);
    /* the signal is tied to the parent *thread*: only when started from the harness's main thread */
    if (strcmp(argv[3], "1") == 0 && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        perror("prctl(PR_SET_PDEATHSIG)");
        return 1;
    }
    if (getppid() != harness) return 1; /* the harness died before the line above took effect */
    prctl(PR_SET_NAME, "isobench-zygote", 0, 0, 0);
    fcntl(sock, F_SETFD, FD_CLOEXEC);
    char hello[32];
    int n = snprintf(hello, sizeof hello, "R %d", (int)getpid());
    if (send(sock, hello, (size_t)n, MSG_NOSIGNAL) < 0) return 1;
    serve(sock);
    return 0;
}
