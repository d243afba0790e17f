#!/usr/bin/env bash
# Profiles the cost of setting up relayed connections (the connect load) in the
# relay and, for v2, in `tlsrelay expose`.
#
#   bench/profile_setup.sh cpu v1|v2 [BUILD]        CPU µs, context switches and
#                                                   syscalls per connection (perf stat)
#   bench/profile_setup.sh callgrind v1|v2 [BUILD]  instructions per connection
#                                                   (valgrind --tool=callgrind)
#   bench/profile_setup.sh syscalls v1|v2 [BUILD]   each system call's count per
#                                                   connection (strace -c; slows the
#                                                   relay, so no rates)
#   bench/profile_setup.sh record v1|v2 [BUILD]     where the CPU goes: perf record
#                                                   (call graphs) of each process, and
#                                                   its top symbols (self time)
#
# BUILD defaults to build (a Release build with tlsrelay and tlsrelay-bench; `make
# bench-deps` installs perf and valgrind). The
# system under test runs on cpu1, the load and backend on cpu0 (the bench's split
# placement). Ports: a free block found at run time. Every process started here is
# stopped by its PID when the script ends. Figures go to stdout; the raw outputs
# stay in a temporary directory that is printed.
set -euo pipefail

mode="${1:?usage: profile_setup.sh cpu|callgrind|syscalls|record v1|v2 [BUILD]}"
config="${2:?usage: profile_setup.sh cpu|callgrind|syscalls|record v1|v2 [BUILD]}"
build="${3:-build}"
slots="${SLOTS:-32}"
seconds="${SECONDS_MEASURED:-5}"
tool="$build/tlsrelay-bench"
relay_bin="$build/tlsrelay"
[[ -x $tool && -x $relay_bin ]] || { echo "profile_setup.sh: no $tool or $relay_bin" >&2; exit 2; }
case "$mode" in cpu|record) command -v perf >/dev/null || { echo "profile_setup.sh: needs perf (linux-perf)" >&2; exit 2; } ;;
  callgrind) command -v valgrind >/dev/null || { echo "profile_setup.sh: needs valgrind" >&2; exit 2; } ;;
  syscalls) command -v strace >/dev/null || { echo "profile_setup.sh: needs strace" >&2; exit 2; } ;;
  *) echo "profile_setup.sh: mode is cpu, callgrind, syscalls or record" >&2; exit 2 ;; esac
[[ $config == v1 || $config == v2 ]] || { echo "profile_setup.sh: config is v1 or v2" >&2; exit 2; }

dir="$(mktemp -d /tmp/tlsrelay-profile.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
base=""
for try in $(seq 200); do
  p=$((20000 + RANDOM % 12000))
  if port_free "$p" && port_free $((p + 1)) && port_free $((p + 2)) && port_free $((p + 3)) &&
     port_free $((p + 4)) && port_free $((p + 5)); then base=$p; break; fi
done
[[ -n $base ]] || { echo "profile_setup.sh: no free ports" >&2; exit 1; }
backend_port=$((base + 5))

wait_for() {  # wait_for FILE PATTERN: up to 10 s
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "profile_setup.sh: timed out waiting for '$2' in $1" >&2; exit 1
}

"$relay_bin" certs init "$dir/keys" >/dev/null
wrap=()
[[ $mode == callgrind ]] && wrap=(valgrind --tool=callgrind --dump-instr=no "--callgrind-out-file=$dir/relay.cg.%p")
taskset -c 1 "${wrap[@]}" "$relay_bin" serve --listen 127.0.0.1 --port "$base" --port-count 4 \
  --keys "$dir/keys" --log-level warn >"$dir/relay.out" 2>"$dir/relay.err" &
pids+=($!); relay_pid=$!
wait_for "$dir/relay.out" "tlsrelay: listening"
if [[ $config == v1 ]]; then
  taskset -c 0 "$tool" agent --relay "127.0.0.1:$base" --keys "$dir/keys" --backend echo \
    >"$dir/agent.out" 2>"$dir/agent.err" &
  pids+=($!)
  wait_for "$dir/agent.out" "^public"
  target="$(awk '/^public/{print $2}' "$dir/agent.out")"
  measured=("relay:$relay_pid")
else
  taskset -c 0 "$tool" echo --listen "127.0.0.1:$backend_port" >/dev/null 2>"$dir/backend.err" &
  pids+=($!)
  xwrap=()
  [[ $mode == callgrind ]] && xwrap=(valgrind --tool=callgrind --dump-instr=no "--callgrind-out-file=$dir/expose.cg.%p")
  taskset -c 1 "${xwrap[@]}" "$relay_bin" expose "127.0.0.1:$backend_port" --relay "127.0.0.1:$base" \
    -k "$dir/keys" --log-level warn >"$dir/expose.out" 2>&1 &
  pids+=($!); expose_pid=$!
  wait_for "$dir/expose.out" "exposing"
  target="$(sed -nE 's/.*exposing \S+ on (\S+).*/\1/p' "$dir/expose.out" | head -1)"
  measured=("relay:$relay_pid" "expose:$expose_pid")
fi

# Warm-up, then the measured load.
taskset -c 0 "$tool" connect --target "$target" --slots "$slots" --seconds 2 >/dev/null 2>&1
if [[ $mode == callgrind ]]; then
  for m in "${measured[@]}"; do callgrind_control -z "${m#*:}" >/dev/null; done
  taskset -c 0 "$tool" connect --target "$target" --slots "$slots" --seconds "$seconds" >"$dir/connect.json"
  for m in "${measured[@]}"; do callgrind_control -d "${m#*:}" >/dev/null; done
elif [[ $mode == syscalls ]]; then
  strace_pids=()
  for m in "${measured[@]}"; do
    strace -f -c -o "$dir/strace-${m%%:*}.txt" -p "${m#*:}" 2>/dev/null &
    strace_pids+=($!)
  done
  sleep 1  # strace attaches to every thread
  taskset -c 0 "$tool" connect --target "$target" --slots "$slots" --seconds "$seconds" >"$dir/connect.json"
  for p in "${strace_pids[@]}"; do kill -INT "$p"; done
  wait "${strace_pids[@]}" 2>/dev/null || true
elif [[ $mode == record ]]; then
  perf_pids=()
  for m in "${measured[@]}"; do
    perf record -g -F 2000 -p "${m#*:}" -o "$dir/perf-${m%%:*}.data" -- sleep $((seconds + 1)) \
      >/dev/null 2>&1 &
    perf_pids+=($!)
  done
  taskset -c 0 "$tool" connect --target "$target" --slots "$slots" --seconds "$seconds" >"$dir/connect.json"
  wait "${perf_pids[@]}"
  for m in "${measured[@]}"; do
    echo "== ${m%%:*}: self time per library, then per symbol (perf report --no-children; call graphs in $dir/perf-${m%%:*}.data)"
    for sort in dso symbol; do
      perf report -i "$dir/perf-${m%%:*}.data" --no-children --sort "$sort" --stdio -g none \
        --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/ {2,}/ /g; s/( -)+ *$//' |
        cut -c1-120 | head -30
    done
  done
else
  perf_pids=()
  for m in "${measured[@]}"; do
    perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "${m#*:}" \
      -o "$dir/perf-${m%%:*}.txt" -- sleep $((seconds + 1)) &
    perf_pids+=($!)
  done
  taskset -c 0 "$tool" connect --target "$target" --slots "$slots" --seconds "$seconds" >"$dir/connect.json"
  wait "${perf_pids[@]}"
fi

python3 - "$mode" "$dir" "${measured[@]}" <<'PY'
import glob, json, re, sys
mode, d, measured = sys.argv[1], sys.argv[2], [m.split(":")[0] for m in sys.argv[3:]]
c = json.load(open(f"{d}/connect.json"))
n = max(c["connections"], 1)
print(f"connect load: {c['connections_per_s']:.0f} connections/s, p99 {c['p99_ms']:.2f} ms, "
      f"{c['connections']} connections, {c['failures']} failures")
for name in measured:
    if mode == "cpu":
        t = open(f"{d}/perf-{name}.txt").read()
        num = lambda pat: float(re.search(pat, t).group(1).replace(",", ""))
        cpu_ms = num(r"([\d.,]+)\s+msec task-clock")
        switches = num(r"([\d,]+)\s+context-switches")
        syscalls = num(r"([\d,]+)\s+raw_syscalls:sys_enter")
        print(f"{name}: {cpu_ms * 1000 / n:.1f} µs CPU, {switches / n:.2f} context switches, "
              f"{syscalls / n:.1f} syscalls per connection")
    elif mode == "record":
        pass  # the reports are printed above
    elif mode == "syscalls":
        # strace -c: "% time  seconds  usecs/call  calls  [errors]  syscall"
        rows = []
        for line in open(f"{d}/strace-{name}.txt"):
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                rows.append((int(f[3]), f[-1]))
        total = sum(calls for calls, _ in rows)
        print(f"{name}: {total / n:.1f} syscalls per connection (strace slows it: no rates)")
        for calls, call in sorted(rows, reverse=True):
            if calls / n >= 0.05:
                print(f"  {call:<16} {calls / n:6.2f}")
    else:
        parts = sorted(glob.glob(f"{d}/{name}.cg.*.1"))
        total = 0
        for f in parts:
            for line in open(f):
                if line.startswith("summary:"):
                    total += int(line.split()[1])
        print(f"{name}: {total / n:,.0f} instructions per connection ({', '.join(parts)})")
PY
echo "raw outputs: $dir"
