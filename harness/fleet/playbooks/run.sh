#!/bin/sh
# One host's `isobench run` (bench.yml's run step).
#   $1 the host's working directory   $2 the project checkout   $3 the Python   $4 the run id
#   $5 more arguments for `isobench run` (the inventory's isobench_run_args: --skip-unavailable …)
# It writes its pid first (the cleanup stops a run still going after a Ctrl-C or a timeout).
# On cgroup v2 the harness must be alone in its cgroup to hand controllers down: in a delegated
# systemd scope where systemd runs, else (a guest without systemd, sessions in the root cgroup)
# in a child cgroup of its own, below the one it is in.
set -eu
workdir=$1 src=$2 python=$3 run_id=$4 more=${5:-}
echo $$ > "$workdir/run.pid"
cd "$src"
set -- "$python" -m harness run "$workdir/scenario.toml" --results "$workdir/results" --run-id "$run_id" \
  --no-progress --no-summary $more
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then
    exec systemd-run --scope --quiet -p Delegate=yes -- "$@"
  fi
  if [ "$(cat /proc/self/cgroup)" = "0::/" ]; then
    mkdir -p "/sys/fs/cgroup/isobench-$run_id"
    echo $$ > "/sys/fs/cgroup/isobench-$run_id/cgroup.procs"
  fi
fi
exec "$@"
