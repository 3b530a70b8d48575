#!/bin/sh
# An independent run of one throughput benchmark, sharing nothing with the harness: the tool
# started by this shell with the arguments written out below, its own plain-text output read
# with awk (stress-ng's metrics line, fio's terse line, iperf3's receiver line, sockperf's
# percentile line).  The network pair is made here with ip(8): two namespaces joined by a veth,
# addresses from 10.231.255.252/30 inside them only, removed on any exit.
#
#   tools/crosscheck-throughput.sh BENCH SECONDS [DIR [SIZE_MIB [CPUS]]]
#
# CPUS: a CPU list (taskset -c) the tool -- for the network benchmarks, the server -- is pinned
# to, as the harness pinned the instance (its rows' `cpus`); empty: not pinned.
# BENCH: cpu matrix stream stream_random syscall forkexec ctxswitch (stress-ng),
#        randread randwrite seqread seqwrite (fio, on DIR/isobench-xcheck.dat), tcp_stream tcp_rr.
# Prints one line: bench=BENCH value=V unit=U
set -eu
[ $# -ge 2 ] || { echo "usage: $0 BENCH SECONDS [DIR [SIZE_MIB]]" >&2; exit 2; }
bench=$1 seconds=$2 dir=${3:-/var/tmp} size=${4:-128} cpus=${5:-}
pin=
[ -z "$cpus" ] || pin="taskset -c $cpus"
work=$(mktemp -d /tmp/isobench-xcheck.XXXXXX)
chmod 777 "$work"
a=isobench-xcheck-$$-a b=isobench-xcheck-$$-b
cleanup() {
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$work" "$dir/isobench-xcheck-$$.dat"
}
trap cleanup EXIT INT TERM
cd "$work"

stress() {  # stressor, then the command: bogo ops/s (real time) from stress-ng's metrics line
    name=$1
    shift
    $pin "$@" > log 2>&1 || { tail -n 3 log >&2; exit 1; }
    awk -v s="$name" '$2 == "metrc:" && $4 == s && NF == 10 && $9 ~ /^[0-9.]+$/ { v = $9 } END {
        if (v == "") exit 1; printf "bench=%s value=%s unit=bogo-ops/s\n", ENVIRON["bench"], v }' log ||
        { echo "stress-ng printed no rate: $(tail -n 1 log)" >&2; exit 1; }
}

fio_() {  # rw bs: terse v3 fields 7/8 (read KiB/s, IOPS), 48/49 (write)
    $pin fio --name="$bench" --filename="$dir/isobench-xcheck-$$.dat" --size="${size}M" --rw="$1" --bs="$2" \
        --iodepth=16 --ioengine=libaio --direct=1 --time_based --runtime="$seconds" --ramp_time=1 \
        --output-format=terse --terse-version=3 > log 2>&1 || { tail -n 3 log >&2; exit 1; }
    awk -F';' -v rw="$1" 'NF > 50 { w = (rw ~ /write/); bw = w ? $48 : $7; iops = w ? $49 : $8 } END {
        if (iops == "") exit 1
        if (rw ~ /rand/) printf "bench=%s value=%s unit=IOPS\n", ENVIRON["bench"], iops
        else printf "bench=%s value=%.3f unit=MiB/s\n", ENVIRON["bench"], bw / 1024 }' log ||
        { echo "fio printed no rate: $(tail -n 1 log)" >&2; exit 1; }
}

pair() {  # two namespaces and a veth between them; the server end is 10.231.255.254
    ip netns add "$a"
    ip netns add "$b"
    for ns in "$a" "$b"; do
        ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'
        ip -n "$ns" link set lo up
    done
    ip -n "$a" link add xcheck0 type veth peer name xcheck1 netns "$b"
    ip -n "$a" addr add 10.231.255.253/30 dev xcheck0
    ip -n "$b" addr add 10.231.255.254/30 dev xcheck1
    ip -n "$a" link set xcheck0 up
    ip -n "$b" link set xcheck1 up
}

export bench
t="--timeout ${seconds}s --metrics-brief"
case $bench in
cpu) stress cpu stress-ng --cpu 1 --cpu-method int64 $t ;;
matrix) stress matrix stress-ng --matrix 1 --matrix-method prod --matrix-size 128 $t ;;
stream) stress stream stress-ng --stream 1 --stream-l3-size 8M $t ;;
stream_random) stress stream stress-ng --stream 1 --stream-index 3 --stream-l3-size 2M $t ;;
syscall) stress get stress-ng --get 1 $t ;;
forkexec) stress exec su -s /bin/sh nobody -c "exec stress-ng --exec 1 $t" ;;
ctxswitch) stress switch stress-ng --switch 1 --switch-method pipe $t ;;
randread) fio_ randread 4k ;;
randwrite) fio_ randwrite 4k ;;
seqread) fio_ read 1M ;;
seqwrite) fio_ write 1M ;;
tcp_stream)
    pair
    ip netns exec "$b" $pin iperf3 -s -1 -4 -p 5201 > server.log 2>&1 &
    sleep 0.5
    ip netns exec "$a" iperf3 -c 10.231.255.254 -p 5201 -t "$seconds" -O 1 -f m > log 2>&1 || { tail -n 3 log >&2; exit 1; }
    wait
    awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") v = $i } END {
        if (v == "") exit 1; printf "bench=%s value=%.4f unit=Gbit/s\n", ENVIRON["bench"], v / 1000 }' log ||
        { echo "iperf3 printed no rate: $(tail -n 1 log)" >&2; exit 1; } ;;
tcp_rr)
    pair
    ip netns exec "$b" $pin sockperf server --tcp -i 0.0.0.0 -p 11111 > server.log 2>&1 &
    server=$!
    sleep 0.5
    ip netns exec "$a" sockperf ping-pong --tcp -i 10.231.255.254 -p 11111 -t "$seconds" > log 2>&1 || true
    kill "$server" 2>/dev/null || true
    wait
    awk '/percentile 50.000 =/ { v = $NF } END {
        if (v == "") exit 1; printf "bench=%s value=%s unit=us\n", ENVIRON["bench"], v }' log ||
        { echo "sockperf printed no latency: $(tail -n 1 log)" >&2; exit 1; } ;;
*) echo "unknown benchmark $bench" >&2; exit 2 ;;
esac
