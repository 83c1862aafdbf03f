#!/usr/bin/env bash
# Where knockerd's knock-to-open time goes, sample by sample (BENCHMARKS.md, "Knock-to-open
# latency", "Where the tail comes from"): runs the latency bench (knockerd's sequence, SPA and SYN
# doors, no incumbents) with an ftrace instance of its own recording knockerd's syscalls and
# scheduling on CLOCK_MONOTONIC, the clock of the bench's --samples-out, then lines each sample up
# with its stages: the worker woken by NFLOG, its report written, the parent woken, the ledger's
# fdatasync, the nftables batch sent and acknowledged, the notification.
#
#   sudo scripts/trace-latency.sh                    1000 samples per door, output in a temp dir
#   sudo scripts/trace-latency.sh --samples 200      fewer (any knocker-flood latency option)
#
# Root only (tracefs, namespaces). The instance (/sys/kernel/tracing/instances/knocker-latency)
# is removed at the end, on failure too; the global trace buffer is not touched. Tracing costs a
# few microseconds per event: compare stages, not the run's figures with an untraced one.
set -euo pipefail
cd "$(dirname "$0")/.."
T=/sys/kernel/tracing/instances/knocker-latency
out=$(mktemp -d /tmp/knocker-trace.XXXXXX)
[ -d /sys/kernel/tracing/events/syscalls ] || { echo "no syscall tracepoints in tracefs" >&2; exit 1; }
cargo build --release --locked -p knockerd -p knocker-bench
cleanup() { [ -d "$T" ] && { echo 0 > "$T/tracing_on"; echo 0 > "$T/events/enable"; rmdir "$T"; } || true; }
trap cleanup EXIT
mkdir "$T"
echo mono > "$T/trace_clock"
echo 65536 > "$T/buffer_size_kb"
F='comm == "knockerd" || comm == "knocker-flood"'
for e in sys_enter_fdatasync sys_exit_fdatasync sys_enter_sendto sys_exit_recvfrom sys_exit_poll \
  sys_enter_write sys_exit_read; do
  echo "$F" > "$T/events/syscalls/$e/filter"
  echo 1 > "$T/events/syscalls/$e/enable"
done
echo 'comm == "knockerd"' > "$T/events/sched/sched_wakeup/filter"
echo 1 > "$T/events/sched/sched_wakeup/enable"
echo 'next_comm == "knockerd"' > "$T/events/sched/sched_switch/filter"
echo 1 > "$T/events/sched/sched_switch/enable"
echo 1 > "$T/tracing_on"
./target/release/knocker-flood latency --samples 1000 --doors sequence,spa,syn --incumbents none \
  "$@" --samples-out "$out/samples.csv" > "$out/report.txt"
echo 0 > "$T/tracing_on"
cat "$T/trace" > "$out/trace.txt"
cat "$out/report.txt"
python3 scripts/trace-latency.py "$out"
echo "(trace, samples and report in $out)"
