#!/bin/sh
# Leave nothing of a fleet run on this host (bench.yml at the end of every host's run,
# cleanup.yml after a Ctrl-C of `isobench fleet run`).
#   $1 the host's working directory (.../isobench-fleet-ID-HOST)   $2 the run id its attempts' start with
#   $3 the Python that runs isobench                                $4 the project checkout
set -u
workdir=$1 run_id=$2 python=$3 src=$4
case "$workdir" in
  */isobench-fleet-*) ;;
  *) echo "isobench fleet: refusing to remove $workdir" >&2; exit 2 ;;
esac
# the run itself, if it is still going (a Ctrl-C, a task timeout): the pid it wrote, if that
# process still carries this run's id (a pid can be reused)
if [ -f "$workdir/run.pid" ]; then
  pid=$(cat "$workdir/run.pid")
  if grep -q -- "$run_id" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null  # the harness unwinds a SIGTERM like a Ctrl-C
    i=0
    while [ -d "/proc/$pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
  fi
fi
# the cgroup run.sh gave the harness on a v2 host without systemd (and the leaf the harness moved
# into): run.sh made it, this removes it; rmdir takes only what is empty, anything else is left
# for isobench cleanup, which says so
for d in /sys/fs/cgroup/isobench-"$run_id"-a*/isobench-harness /sys/fs/cgroup/isobench-"$run_id"-a*; do
  [ -d "$d" ] && rmdir "$d" 2>/dev/null
done
rc=0
if [ -d "$src/harness" ]; then
  command -v "$python" >/dev/null 2>&1 || python=python3
  (cd "$src" && "$python" -m harness cleanup --run-id "$run_id") || rc=$?
fi
rm -rf "$workdir" || rc=$?
exit $rc
