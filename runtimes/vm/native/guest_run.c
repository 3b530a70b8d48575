/*
 * isobench-guest-run: an image's process inside a guest, started and watched by the guest's init.
 *
 * Why C: the guest's init is busybox, and the app must start in the image's root with the
 * image's user, groups, working directory and environment.  chroot(1) changes to "/" after
 * the chroot and drops nothing; setpriv(1) and su(1) would have to live *inside* the image's
 * root.  This program does, outside the image, what a container runtime's init does just before
 * the exec: chroot, setgroups/setgid/setuid, chdir(cwd), execvp with the image's PATH.
 * It is built statically by runtimes/vm/native.py and put into the guest's initramfs.
 *
 * Usage (from the guest's /init, never by hand):  isobench-guest-run ROOT SPEC
 * SPEC is a file of NUL-terminated "key=value" records, written by runtimes/vm/image_spec.py:
 *   arg=        one per argv element, in order (argv[0] is looked up in the image's PATH)
 *   env=K=V     one per variable (the whole environment)
 *   cwd= uid= gid= groups=G1,G2   the process's working directory and credentials
 *   cgroup=DIR  a cgroup the app joins before it execs (the guest's limits), optional
 *   ready=tcp|http|none  port= path=   what to probe on the guest's own loopback
 *   interval_us= fast_us= slow_us= attempt_ms=   the probe's schedule (runtimes/readiness.py's)
 *   stop=SIGNUM grace_ms=N   what "ISOBENCH STOP" on the console does
 *
 * The app's stdout and stderr are one pipe; every byte is copied to our stdout (the console),
 * as a process backend's harness copies the pipe to the instance's log.  On fd 3 (the console)
 * we write "ISOBENCH READY" when the probe succeeds, with the guest's memory at that moment, and
 * RESULT lines.  Lines on stdin (the console, written by the host) are requests: "ISOBENCH STOP"
 * sends the stop signal, then SIGKILL after the grace; "ISOBENCH MEMINFO" reports the guest's
 * memory now (guest_now_*, then guest_now_seq=N, N counting the answers).  The exit status is the app's (128+N when killed by signal N, as a shell reports it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITEMS 4096
#define MAX_GROUPS 256
#define MARKER_FD 3
#ifndef SYS_close_range
#define SYS_close_range 436 /* the same number on every architecture (asm-generic) */
#endif
#define STOP_LINE "ISOBENCH STOP"
#define MEMINFO_LINE "ISOBENCH MEMINFO"

extern char **environ;

static char *argv_[MAX_ITEMS + 1], *envp_[MAX_ITEMS + 1];
static int argc_, envc_;
static const char *cwd = "/", *cgroup, *ready = "none", *path = "/", *groups = "";
static long uid, gid, port, interval_us = 1000, fast_us = 2000000, slow_us = 10000, attempt_ms = 1000;
static long stop_signal = SIGTERM, grace_ms = 5000;
/* whether the app's output, as copied to the console, ends with a whole line: a marker written
 * after a partial line would be glued to it (print() writes its text and its newline apart) */
static int at_line_start = 1;

static void die(const char *what) {
    fprintf(stderr, "isobench-guest-run: %s: %s\n", what, strerror(errno));
    exit(125);
}

static long number(const char *key, const char *value) {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || *end || end == value) {
        fprintf(stderr, "isobench-guest-run: bad %s=%s in the spec\n", key, value);
        exit(125);
    }
    return n;
}

static void read_spec(const char *file) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(file);
    char *buf = malloc(st.st_size + 1);
    if (!buf || read(fd, buf, st.st_size) != st.st_size)
        die("reading the spec");
    buf[st.st_size] = 0;
    close(fd);
    static const struct { const char *key; long *n; } numbers[] = {
        {"uid", &uid}, {"gid", &gid}, {"port", &port}, {"interval_us", &interval_us},
        {"fast_us", &fast_us}, {"slow_us", &slow_us}, {"attempt_ms", &attempt_ms},
        {"stop", &stop_signal}, {"grace_ms", &grace_ms}};
    for (char *p = buf, *next; p < buf + st.st_size; p = next) {
        next = p + strlen(p) + 1;
        char *eq = strchr(p, '=');
        if (!eq)
            continue;
        *eq = 0;
        char *v = eq + 1;
        if (!strcmp(p, "arg") && argc_ < MAX_ITEMS)
            argv_[argc_++] = v;
        else if (!strcmp(p, "env") && envc_ < MAX_ITEMS)
            envp_[envc_++] = v;
        else if (!strcmp(p, "cwd")) cwd = v;
        else if (!strcmp(p, "cgroup")) cgroup = v;
        else if (!strcmp(p, "ready")) ready = v;
        else if (!strcmp(p, "path")) path = v;
        else if (!strcmp(p, "groups")) groups = v;
        else
            for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
                if (!strcmp(p, numbers[i].key))
                    *numbers[i].n = number(p, v);
    }
    if (argc_ == 0) {
        fprintf(stderr, "isobench-guest-run: the spec has no arg\n");
        exit(125);
    }
}

/* In the child: from here on, failures are the app's start failing (127: not found, 126: other). */
static void become_app(const char *root, int out) {
    char pid[32];
    gid_t list[MAX_GROUPS];
    size_t n = 0;
    if (cgroup) {
        char procs[4096];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cgroup);
        int fd = open(procs, O_WRONLY);
        int len = snprintf(pid, sizeof pid, "%d", getpid());
        if (fd < 0 || write(fd, pid, len) != len)
            die("joining the guest's workload cgroup");
        close(fd);
    }
    for (const char *g = groups; *g && n < MAX_GROUPS; g = strchr(g, ',') ? strchr(g, ',') + 1 : "")
        list[n++] = (gid_t)strtoul(g, NULL, 10);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        die("redirecting the app's stdio");
    /* nothing else of ours reaches the app: not the console (fd 3), as a process backend's app
     * gets no marker fd either */
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
    if (chroot(root) < 0 || chdir("/") < 0)
        die("entering the image's root");
    if (setgroups(n, list) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        die("switching to the image's user");
    if (chdir(cwd) < 0) {
        fprintf(stderr, "isobench-guest-run: chdir to the working directory %s: %s\n", cwd, strerror(errno));
        _exit(126);
    }
    envp_[envc_] = NULL;
    argv_[argc_] = NULL;
    environ = envp_; /* execvpe searches the PATH of environ: the image's, as a container runtime does */
    execvpe(argv_[0], argv_, envp_);
    fprintf(stderr, "isobench-guest-run: cannot execute %s: %s\n", argv_[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

static void relay(const char *buf, ssize_t len) {
    if (len > 0) {
        (void)!write(1, buf, len);
        at_line_start = buf[len - 1] == '\n';
    }
}

/* A marker line on the console (fd 3), always on a line of its own. */
static void marker(const char *fmt, ...) {
    va_list ap;
    if (!at_line_start) {
        (void)!write(1, "\n", 1);
        at_line_start = 1;
    }
    va_start(ap, fmt);
    vdprintf(MARKER_FD, fmt, ap);
    va_end(ap);
}

static long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* One attempt on 127.0.0.1:port: 1 when it is ready (connected; for http, a 2xx status line). */
static int probe_once(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
    struct timeval tv = {attempt_ms / 1000, (attempt_ms % 1000) * 1000};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0)
        return 0;
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        if (strcmp(ready, "http") != 0) {
            ok = 1;
        } else {
            char req[8192], resp[64];
            int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%ld\r\n"
                               "User-Agent: isobench-probe\r\nConnection: close\r\n\r\n", path, port);
            size_t got = 0;
            ssize_t r = 0;
            if (len > 0 && len < (int)sizeof req && send(s, req, len, MSG_NOSIGNAL) == len)
                while (got < 12 && (r = recv(s, resp + got, sizeof resp - 1 - got, 0)) > 0)
                    got += r;
            resp[got] = 0;
            ok = got >= 12 && !strncmp(resp, "HTTP/", 5) && strchr(resp, ' ') && strchr(resp, ' ')[1] == '2';
            /* read the rest of the answer (Connection: close): closing with unread data would reset
             * the connection under the app's feet, an error it would log (capped, as the attempt) */
            for (size_t rest = 0; r > 0 && rest < (1 << 20); rest += r)
                r = recv(s, req, sizeof req, 0);
        }
    }
    close(s);
    return ok;
}

/* A number from a cgroup file: its first number, or that of the line starting with key; -1: none. */
static long cgroup_counter(const char *file, const char *key) {
    char path[4096], text[256], name[64];
    long n = -1, v;
    snprintf(path, sizeof path, "%s/%s", cgroup, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (n < 0 && fgets(text, sizeof text, f))
        if (!key ? sscanf(text, "%ld", &v) == 1 : sscanf(text, "%63s %ld", name, &v) == 2 && !strcmp(name, key))
            n = v;
    fclose(f);
    return n;
}

static const struct { const char *name, *file, *key; } counters[] = {
    {"oom_kill", "memory.events", "oom_kill"}, {"mem_peak", "memory.peak", NULL},
    {"mem_current", "memory.current", NULL}, {"pids_current", "pids.current", NULL},
    {"pids_refused", "pids.events", "max"}};

/* The guest's memory as the kernel counts it, as RESULT lines guest_<tag>_<field>_kib: the page
 * cache (cached: file pages of the image's layers and the initramfs; shmem: tmpfs, the initramfs
 * and the instance's upper among them), the app's anonymous memory, what is left. */
static void meminfo(const char *tag) {
    static const char *const fields[][2] = {
        {"MemFree", "mem_free"}, {"MemAvailable", "mem_available"}, {"Buffers", "buffers"},
        {"Cached", "cached"}, {"AnonPages", "anon"}, {"Shmem", "shmem"}};
    FILE *f = fopen("/proc/meminfo", "r");
    char text[256], key[64];
    long kib;
    if (!f)
        return;
    while (fgets(text, sizeof text, f))
        if (sscanf(text, "%63[^:]: %ld", key, &kib) == 2)
            for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
                if (!strcmp(key, fields[i][0]))
                    marker("ISOBENCH RESULT guest_%s_%s_kib=%ld\n", tag, fields[i][1], kib);
    fclose(f);
    if (cgroup) /* the guest cgroup's own counters, while the app runs under its limits */
        for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
            long n = cgroup_counter(counters[i].file, counters[i].key);
            if (n >= 0)
                marker("ISOBENCH RESULT guest_%s_cg_%s=%ld\n", tag, counters[i].name, n);
        }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: isobench-guest-run ROOT SPEC\n");
        return 125;
    }
    read_spec(argv[2]);
    int pipefd[2];
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
        die("setting up");
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC);
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &chld, NULL);
        become_app(argv[1], pipefd[1]);
    }
    close(pipefd[1]);
    int probing = !strcmp(ready, "tcp") || !strcmp(ready, "http"), status = 0, exited = 0;
    long start = now_us(), next_probe = start, kill_at = -1, meminfo_seq = 0;
    char line[256];
    size_t held = 0;
    struct pollfd fds[3] = {{pipefd[0], POLLIN, 0}, {0, POLLIN, 0}, {sfd, POLLIN, 0}};
    while (!exited) {
        long now = now_us(), wait_us = -1;
        if (probing)
            wait_us = next_probe > now ? next_probe - now : 0;
        if (kill_at >= 0 && (wait_us < 0 || kill_at - now < wait_us))
            wait_us = kill_at > now ? kill_at - now : 0;
        int timeout = wait_us < 0 ? -1 : (int)((wait_us + 999) / 1000);
        if (poll(fds, 3, timeout) < 0 && errno != EINTR)
            die("poll");
        char buf[65536];
        if (fds[0].revents) { /* the app's output, copied as it is */
            ssize_t r = read(pipefd[0], buf, sizeof buf);
            if (r > 0)
                relay(buf, r);
            else
                fds[0].fd = -1;
        }
        if (fds[1].revents) { /* the console: the host's requests, one line each */
            ssize_t r = read(0, line + held, sizeof line - 1 - held);
            if (r <= 0)
                fds[1].fd = -1;
            held += r > 0 ? r : 0;
            line[held] = 0;
            if (strchr(line, '\n') || held == sizeof line - 1) { /* whole lines, in canonical mode */
                if (strstr(line, STOP_LINE) && kill_at < 0) {
                    kill(child, stop_signal);
                    kill_at = now_us() + grace_ms * 1000;
                    marker("ISOBENCH RESULT guest_stop_signal=%ld\n", stop_signal);
                } else if (strstr(line, MEMINFO_LINE)) {
                    meminfo("now");
                    marker("ISOBENCH RESULT guest_now_seq=%ld\n", ++meminfo_seq);
                }
                held = 0;
            }
        }
        if (fds[2].revents) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof si);
            if (waitpid(child, &status, WNOHANG) == child)
                exited = 1;
        }
        if (kill_at >= 0 && !exited && now_us() >= kill_at) {
            kill(child, SIGKILL);
            marker("ISOBENCH RESULT guest_stop_killed=1\n");
            kill_at = -1;
        }
        if (probing && !exited && now_us() >= next_probe) {
            if (probe_once()) {
                marker("ISOBENCH READY\n");
                meminfo("ready");
                probing = 0;
            } else {
                next_probe = now_us() + (now_us() - start < fast_us ? interval_us : slow_us);
            }
        }
    }
    /* what the app wrote before it ended (a child of it holding the pipe does not keep us) */
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
    for (char buf[65536];;) {
        ssize_t r = read(pipefd[0], buf, sizeof buf);
        if (r <= 0)
            break;
        relay(buf, r);
    }
    if (!at_line_start) /* the init's own lines (EXIT) follow */
        (void)!write(1, "\n", 1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
