#!/bin/sh
# An independent measurement of CFS quota enforcement, sharing nothing with the harness:
# a cgroup made by hand, stress-ng started in it by this shell, the kernel's own counters
# read with shell builtins and date(1).
#
#   tools/crosscheck-cpu.sh QUOTA_CPUS PERIOD_MS THREADS [SECONDS [WEIGHT]]
#
# WEIGHT: the cgroup's CPU weight on the cgroup v2 scale (100 = default; v1 cpu.shares =
# WEIGHT x 1024 / 100), as the harness's cell asked for.
#
# Prints one line: quota period_ms threads delivered_cpus expected_cpus ratio periods throttled
# The window starts and ends just after a period boundary (nr_periods seen to move), so it
# holds a whole number of periods.  The cgroup is made below this shell's own cgroup and
# removed on any exit.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 QUOTA_CPUS PERIOD_MS THREADS [SECONDS [WEIGHT]]" >&2; exit 2; }
quota=$1 period_ms=$2 threads=$3 seconds=${4:-6} weight=${5:-}
period_us=$((period_ms * 1000))
quota_us=$(awk -v q="$quota" -v p="$period_us" 'BEGIN { printf "%d", q * p + 0.5 }')
name=isobench-xcheck-$$

# this shell's own cgroup in a v1 hierarchy holding controller $1 (v2: $1 empty)
own() { awk -F: -v c="$1" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }
                            c == "" && $1 == "0" { print $3 }' /proc/self/cgroup | head -n 1; }

if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    cpu=/sys/fs/cgroup$(own "")/$name acct=$cpu
    mkdir "$cpu"
    echo "$quota_us $period_us" > "$cpu/cpu.max"
    [ -z "$weight" ] || echo "$weight" > "$cpu/cpu.weight"
else
    cpu=/sys/fs/cgroup/cpu$(own cpu)/$name acct=/sys/fs/cgroup/cpuacct$(own cpuacct)/$name
    mkdir "$cpu"
    [ -d "$acct" ] || mkdir "$acct"
    echo "$period_us" > "$cpu/cpu.cfs_period_us"
    echo "$quota_us" > "$cpu/cpu.cfs_quota_us"
    [ -z "$weight" ] || echo $((weight * 1024 / 100)) > "$cpu/cpu.shares"
fi
pid=
cleanup() {
    [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    for d in "$cpu" "$acct"; do
        while [ -d "$d" ] && ! rmdir "$d" 2>/dev/null; do sleep 0.05; done
    done
}
trap cleanup EXIT INT TERM

usage() {  # CPU time in ns
    if [ "$acct" = "$cpu" ] && [ -e "$cpu/cpu.stat" ] && [ ! -e "$acct/cpuacct.usage" ]; then
        while read -r k v; do if [ "$k" = usage_usec ]; then echo $((v * 1000)); fi; done < "$cpu/cpu.stat"
    else
        read -r v < "$acct/cpuacct.usage"; echo "$v"
    fi
}
stat_() {  # $1: nr_periods | nr_throttled
    while read -r k v; do if [ "$k" = "$1" ]; then echo "$v"; fi; done < "$cpu/cpu.stat"
}
after_boundary() {  # wait until nr_periods moves, then print "time_ns usage_ns periods throttled"
    p0=$(stat_ nr_periods)
    while [ "$(stat_ nr_periods)" = "$p0" ]; do :; done
    echo "$(date +%s%N) $(usage) $(stat_ nr_periods) $(stat_ nr_throttled)"
}

cd /tmp  # stress-ng needs a writable working directory
sh -c "echo \$\$ > '$cpu/cgroup.procs'; [ '$acct' = '$cpu' ] || echo \$\$ > '$acct/cgroup.procs'; \
       exec stress-ng --cpu $threads --cpu-method int64 --timeout $((seconds + 2))s --quiet" &
pid=$!
sleep 0.5
set -- $(after_boundary)
t0=$1 u0=$2 n0=$3 th0=$4
sleep "$seconds"
set -- $(after_boundary)
t1=$1 u1=$2 n1=$3 th1=$4
cores=$(nproc)
awk -v q="$quota_us" -v p="$period_us" -v thr="$threads" -v c="$cores" -v du=$((u1 - u0)) -v dt=$((t1 - t0)) \
    -v n=$((n1 - n0)) -v th=$((th1 - th0)) -v pm="$period_ms" 'BEGIN {
    want = q / p; if (thr < want) want = thr; if (c < want) want = c
    got = du / dt
    printf "quota=%g period_ms=%g threads=%d delivered=%.5f expected=%.5f ratio=%.5f periods=%d throttled=%d\n",
           q / p, pm, thr, got, want, got / want, n, th }'
