#!/bin/bash
# valed.service under a real systemd: boots a throwaway container (systemd-nspawn, the
# machine's own /usr, an empty / in memory, no network but its own loopback), starts the
# unit as written, with a drop-in that runs this tree's vale (installed into a venv made
# with the system's python3 and bound to /opt/vale), and checks what only systemd shows:
#
#   Type=notify          the unit is active once valed said READY
#   sockets              /run/vale 0755, the socket 0660 root:vale
#   switching            two namespaces on veth through vale0 ping each other
#   fast path            the kernel fast path runs within the unit's limits: both veth
#                        ports tcx (or clsact), maps and links pinned under
#                        /sys/fs/bpf/vale/vale0, an upcall device each, frames forwarded
#                        by it; after kill -9 the same links (known unicast flowed
#                        meanwhile); a clean stop removes the pins, the links, the
#                        program at vxp1's tc ingress and the upcall devices
#   sandboxing           what valed does within the unit's limits: CPU pinning, a
#                        persistent TAP, a capture, metrics, its open-files limit raised
#   ExecReload           systemctl reload valed works
#   Restart=on-failure   after kill -9 valed is back, with its ports, and the TAP it made
#                        has the MAC it had
#   WatchdogSec          a valed that stops answering (SIGSTOP) is killed and restarted
#   stop                 systemctl stop leaves the attached interfaces out of promiscuous mode
#                        (and without vale's BPF program, see fast path)
#
#   journal              valed logged no error and no traceback all along
#
# Needs root, systemd-nspawn (Debian: systemd-container), the system's python3 with venv,
# and PyPI for the venv; without the first three it exits 77 (skipped). The fast path's
# checks also need bpftool, bpffs and a vale built with its BPF object, else they are
# skipped (SKIP). The container gets CAP_BPF and bpf(2), which nspawn keeps
# from it by default, and a bpffs of its own (not the host's: no pins in common with a
# valed there), mounted under the work directory and bound to its /sys/fs/bpf. Everything
# made is named vx<pid>... and removed at the end; only the container's own PIDs are
# signalled.
# Usage: systemd/check.sh        (make check-systemd)
# (-I below: the import must find the installed vale, not this tree's, when run from it)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
name="vx$$"
work=$(mktemp -d "/var/tmp/$name.XXXXXX")
nspawn_pid=""
leader=""
failed=0
fastpath=""                                 # why the fast path is not checked, if it is not

cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill "$nspawn_pid"                  # nspawn halts the container cleanly
        for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$nspawn_pid" 2>/dev/null && [ -n "$leader" ]; then
            kill -9 "$leader"               # its init: the whole container goes with it
            for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        fi
    fi
    if mountpoint -q "$work/bpffs" 2>/dev/null; then
        umount "$work/bpffs" || umount -l "$work/bpffs"   # its pins, links, maps go with it
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM HUP                # through the EXIT trap: the container goes too
trap 'exit 130' INT

say() { printf '%s\n' "check-systemd: $*" >&2; }
check() {                                   # check WHAT COMMAND...: PASS or FAIL
    local what=$1; shift
    if "$@"; then say "PASS $what"; else say "FAIL $what"; failed=1; fi
}
check_fastpath() {                          # a check of the fast path's, unless it is skipped
    if [ -n "$fastpath" ]; then say "SKIP $1 ($fastpath)"; else check "$@"; fi
}

command -v systemd-nspawn >/dev/null || { say "needs systemd-nspawn (apt-get install systemd-container)"; exit 77; }
[ "$(id -u)" = 0 ] || { say "needs root"; exit 77; }
/usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null || { say "needs /usr/bin/python3 with venv (python3-venv)"; exit 77; }

say "installing this tree into a venv of the system's python3"
/usr/bin/python3 -m venv "$work/venv"
timeout 600 "$work/venv/bin/pip" -q install "$here" 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$work/venv/bin/python" -I -c "import vale._fastpath" || { say "the install failed"; exit 1; }
nspawn_bpf=()
if ! "$work/venv/bin/python" -I -c "import vale._bpf" 2>/dev/null; then
    fastpath="vale was built without it"
elif ! command -v bpftool >/dev/null; then
    fastpath="needs bpftool"
elif ! { mkdir "$work/bpffs" && mount -t bpf -o mode=0700 bpf "$work/bpffs"; }; then
    fastpath="no bpffs here"
else
    nspawn_bpf=(--capability=CAP_BPF --system-call-filter=bpf
                --bind="$work/bpffs:/sys/fs/bpf")
fi

mkdir -p "$work/units/valed.service.d"
cp "$here/systemd/valed.service" "$work/units/"
cat > "$work/units/valed.service.d/10-check.conf" <<EOF
[Service]
ExecStartPre=+/usr/sbin/groupadd -f vale
LimitCORE=0
ExecStart=
ExecStart=/opt/vale/bin/python -m vale.daemon --foreground --group vale
ExecReload=
ExecReload=/opt/vale/bin/python -m vale.cli.valectl --socket /run/vale/valed.sock reload
EOF
cat > "$work/units/$name.target" <<EOF
[Unit]
Description=vale's systemd check
Requires=sysinit.target
After=sysinit.target
Wants=valed.service
EOF
cat > "$work/inside.sh" <<'EOF'
# Run in the container by nsenter: one line "name value" per fact the host checks.
set -u
ctl="/opt/vale/bin/python -m vale.cli.valectl"
fact() { printf '%s %s\n' "$1" "$2"; }
restarts() { systemctl show -p NRestarts --value valed; }
signal_valed() {                # never "kill 0": that would be our whole process group
    local pid
    pid=$(systemctl show -p MainPID --value valed)
    [ "${pid:-0}" -gt 0 ] && kill "$1" "$pid"
}
wait_for() { for _ in $(seq 150); do eval "$1" && return 0; sleep 0.2; done; return 1; }
fact active "$(systemctl is-active valed)"
fact exposure "$(systemd-analyze security valed --no-pager 2>/dev/null | grep -o 'exposure level for valed.service: [0-9.]* [A-Z]*' | cut -d' ' -f5-)"
fact rundir "$(stat -c %a /run/vale)"
fact socket "$(stat -c %a:%U:%G /run/vale/valed.sock)"
for i in 1 2; do
    ip netns add "vxh$i"
    ip link add "vxp$i" type veth peer name eth0 netns "vxh$i"
    ip link set "vxp$i" up
    ip -n "vxh$i" addr add "198.18.7.$i/24" dev eth0
    ip -n "vxh$i" link set eth0 up
done
$ctl attach vale0:vxp1 && $ctl attach vale0:vxp2
ip netns add vxh3
$ctl create --tap --netns vxh3 --address 198.18.7.3/24 vxt3 >/dev/null
mac() { ip -n vxh3 -o link show vxt3 | grep -o 'ether [0-9a-f:]*'; }
fact mac_before "$(mac)"
ping_ok() { ip netns exec vxh1 ping -c 2 -i 0.2 -W 1 -q "$1" >/dev/null && echo yes || echo no; }
fact ping "$(ping_ok 198.18.7.2)"
fact ping_tap "$(ping_ok 198.18.7.3)"
# The kernel fast path: each port's state as info shows it, what is pinned, the tcx links
# by id (bpftool), how many programs sit at vxp1's tc ingress, the frames it forwarded.
pins=/sys/fs/bpf/vale/vale0
walk='
def walk(v):                    # every (key, value) in a JSON document, however nested
    for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
        yield k, x
        yield from walk(x)
'
state() {                       # the fast path of port $1, as info says
    $ctl info "vale0:$1" --json | python3 -c "$walk"'
import json, sys
print(next(x for k, x in walk(json.load(sys.stdin)) if k == "fastpath_state"))'
}
attach_pin() {                  # what pin marks the attachment to interface $1
    local kind
    for kind in tcx clsact; do
        [ -e "$pins/${kind}_$(cat "/sys/class/net/$1/ifindex")" ] && { echo "$kind"; return; }
    done
    echo none
}
links() {                       # the ids of the tcx links to interfaces "$@"
    local port pin
    for port in "$@"; do
        pin="$pins/tcx_$(cat "/sys/class/net/$port/ifindex")"
        [ -e "$pin" ] && bpftool -j link show pinned "$pin" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
    done | tr '\n' ' '
}
links_alive() {                 # how many of the links with these ids the kernel still has
    local id n=0
    for id in "$@"; do bpftool link show id "$id" >/dev/null 2>&1 && n=$((n + 1)); done
    echo "$n"
}
tc_ingress() {                  # programs at tc ingress of $1: tcx (the kernel asked) + clsact
    local tcx
    tcx=$(python3 - "$1" <<'PY'
import ctypes, platform, socket, struct, sys
# bpf(BPF_PROG_QUERY) for BPF_TCX_INGRESS: the ifindex, the attach type, then prog_cnt at 24
nr = {"x86_64": 321, "i686": 357, "aarch64": 280, "riscv64": 280, "loongarch64": 280,
      "ppc64le": 361, "s390x": 351}[platform.machine()]
attr = ctypes.create_string_buffer(struct.pack("=IIIIQI4xQQQQ",
                                               socket.if_nametoindex(sys.argv[1]), 46,
                                               0, 0, 0, 0, 0, 0, 0, 0), 64)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if libc.syscall(nr, 16, attr, 64) == 0:
    print(struct.unpack_from("=I", attr, 24)[0])
else:                           # EINVAL: a kernel without tcx
    print(0 if ctypes.get_errno() == 22 else f"errno {ctypes.get_errno()}")
PY
)
    case $tcx in
        '' | *[!0-9]*) echo "unknown ($tcx)" ;;
        *) echo "$((tcx + $(tc filter show dev "$1" ingress | grep -c ' handle ')))" ;;
    esac
}
fastpath_packets() {            # what it forwarded, by vale's counters (> 0 is all we ask)
    $ctl stats vale0 --json | python3 -c "$walk"'
import json, sys
print(sum(x for k, x in walk(json.load(sys.stdin)) if str(k).startswith("fastpath")
          and str(k).endswith("packets") and isinstance(x, int)))'
}
if [ -e /sys/fs/bpf ]; then
    fact fastpath "$(state vxp1),$(state vxp2)"
    fact maps "$(ls "$pins" | grep '^vale_' | sort | tr '\n' ' ')"
    fact attach_pins "$(attach_pin vxp1),$(attach_pin vxp2)"
    fp_links=$(links vxp1 vxp2)
    fact fp_links "$fp_links"
    fact tc_ingress "$(tc_ingress vxp1)"
    fact upcalls "$(ls /sys/class/net | grep -c '^vale-up' || true)"
    ip netns exec vxh1 ping -c 5 -i 0.2 -W 1 -q 198.18.7.2 >/dev/null
    fact fastpath_packets "$(fastpath_packets)"
fi
pinned() {                      # the CPUs the forwarding thread vale:vale0 may run on
    local pid task
    pid=$(systemctl show -p MainPID --value valed)
    for task in /proc/"$pid"/task/*; do
        [ "$(cat "$task/comm")" = vale:vale0 ] && grep Cpus_allowed_list "$task/status" | cut -f2
    done
}
$ctl set vale0 cpus=0 && fact cpus "$(pinned)"
$ctl create --tap --persistent vxt4 >/dev/null && fact persistent "$(cat /sys/class/net/vxt4/tun_flags)"
( sleep 1; ip netns exec vxh1 ping -c 3 -i 0.2 -q 198.18.7.2 >/dev/null ) &
fact captured "$(timeout 10 $ctl capture vale0:vxp2 -c 2 -w /run/check-capture.pcap >/dev/null 2>&1; stat -c %s /run/check-capture.pcap 2>/dev/null || echo 0)"
wait
fact metrics "$(/opt/vale/bin/python -c "import urllib.request as u; print(sum(l.startswith(b'vale_') for l in u.urlopen('http://127.0.0.1:9466/metrics', timeout=5)))")"
pid=$(systemctl show -p MainPID --value valed)
# (no awk: the container's /etc, where Debian's alternatives point it, starts empty)
read -r _ _ _ soft hard _ < <(grep "Max open files" "/proc/$pid/limits")
fact nofile "$([ "$soft" = "$hard" ] && echo raised || echo "$soft<$hard")"
systemctl reload valed && fact reload ok || fact reload failed
signal_valed -KILL
wait_for '[ "$(restarts)" = 1 ] && [ "$(systemctl is-active valed)" = active ]'
fact after_kill "$(restarts):$(systemctl is-active valed)"
fact ports_after_kill "$($ctl list --json | python3 -c 'import json,sys; print(sorted(p["port"] + "=" + p["state"] for p in json.load(sys.stdin)))' | tr -d " '")"
fact mac_after "$(mac)"
fact ping_after_kill "$(ping_ok 198.18.7.2)"
fact ping_tap_after_kill "$(ping_ok 198.18.7.3)"
if [ -e /sys/fs/bpf ]; then
    fact fastpath_after_kill "$(state vxp1),$(state vxp2)"
    fact fp_links_after_kill "$(links vxp1 vxp2)"
fi
signal_valed -STOP
wait_for '[ "$(restarts)" = 2 ] && [ "$(systemctl is-active valed)" = active ]'
fact after_watchdog "$(restarts):$(systemctl is-active valed)"
fact watchdog_logged "$(journalctl -u valed --no-pager | grep -c 'Watchdog timeout')"
fact ping_after_watchdog "$(ping_ok 198.18.7.2)"
systemctl stop valed
fact stopped "$(systemctl is-active valed)"
fact promisc "$(ip -d link show vxp1 | grep -o 'promiscuity [0-9]*' | cut -d' ' -f2)"
if [ -e /sys/fs/bpf ]; then
    fact pins_after_stop "$(ls -A "$pins" 2>/dev/null | tr '\n' ' ' || true)$([ -e "$pins" ] || echo gone)"
    # shellcheck disable=SC2086 # the ids, one word each
    fact links_after_stop "$(links_alive $fp_links)"
    fact tc_ingress_after_stop "$(tc_ingress vxp1)"
    fact upcalls_after_stop "$(ls /sys/class/net | grep -c '^vale-up' || true)"
fi
# valed's own lines (not systemd's about it), which carry their priority (<3> errors)
fact errors "$(journalctl _SYSTEMD_UNIT=valed.service -p err -o cat --no-pager | grep -c .)"
fact tracebacks "$(journalctl _SYSTEMD_UNIT=valed.service -o cat --no-pager | grep -c Traceback)"
fact info_lines "$(journalctl _SYSTEMD_UNIT=valed.service -p info -o cat --no-pager | grep -c '^INFO .* is back$')"
fact unparsed "$(journalctl _SYSTEMD_UNIT=valed.service -o cat --no-pager | grep -c '^<')"
EOF

say "booting a container"
systemd-nspawn -D / --volatile=yes --private-network --register=no --keep-unit -M "$name" \
    --bind-ro="$work/venv:/opt/vale" --bind-ro="$work/units:/run/systemd/system" \
    --bind-ro="$work/inside.sh:/run/check-inside.sh" "${nspawn_bpf[@]}" \
    --boot -- "systemd.unit=$name.target" systemd.firstboot=off \
    > "$work/console.log" 2>&1 < /dev/null &
nspawn_pid=$!
booted=""
for _ in $(seq 150); do
    child=$(ps -o pid= --ppid "$nspawn_pid" | head -1 | tr -d ' ') || true
    if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
        leader=$child                       # the container's init: ours to signal
        if nsenter -t "$leader" -a systemctl is-active -q valed 2>/dev/null; then
            booted=yes
            break
        fi
    fi
    sleep 0.2
done
if [ -z "$booted" ]; then
    say "the container did not start valed within 30 s:"; cat "$work/console.log" >&2
    exit 1
fi

timeout 300 nsenter -t "$leader" -a bash /run/check-inside.sh > "$work/facts" \
    2> "$work/inside.err" || true
fact() { grep "^$1 " "$work/facts" | cut -d' ' -f2-; }
same_mac() { [ -n "$(fact mac_before)" ] && [ "$(fact mac_after)" = "$(fact mac_before)" ]; }
journal_parsed() { [ "$(fact info_lines)" -ge 6 ] && [ "$(fact unparsed)" = 0 ]; }
fastpath_on() { case "$(fact "$1")" in tcx,tcx | clsact,clsact) true ;; *) false ;; esac; }
pinned_all() {                  # the six maps, and a tcx link or clsact mark for each port
    [ "$(fact maps)" = "vale_dst vale_egress vale_passed vale_ports vale_src vale_stats " ] &&
        [ "$(fact attach_pins)" = "$(fact fastpath)" ]
}
same_links() {                  # (clsact has no links: nothing to compare)
    { [ -n "$(fact fp_links)" ] || [ "$(fact fastpath)" = clsact,clsact ]; } &&
        [ "$(fact fp_links_after_kill)" = "$(fact fp_links)" ]
}
check "Type=notify: active after READY" [ "$(fact active)" = active ]
check "/run/vale is 0755" [ "$(fact rundir)" = 755 ]
check "the socket is 0660 root:vale" [ "$(fact socket)" = 660:root:vale ]
check "two hosts ping through vale0" [ "$(fact ping)" = yes ]
check "a TAP valed made answers" [ "$(fact ping_tap)" = yes ]
check_fastpath "the kernel fast path on both veth ports (tcx or clsact)" fastpath_on fastpath
check_fastpath "its maps and links pinned in /sys/fs/bpf/vale/vale0" pinned_all
check_fastpath "its program at vxp1's tc ingress" [ "$(fact tc_ingress)" = 1 ]
check_fastpath "an upcall device for each port" [ "$(fact upcalls)" = 2 ]
check_fastpath "frames forwarded by it" [ "$(fact fastpath_packets)" -gt 0 ]
check "CPU pinning (cpus=0)" [ "$(fact cpus)" = 0 ]
check "a persistent TAP" [ -n "$(fact persistent)" ]
check "a capture of two frames" [ "$(fact captured)" -gt 24 ]
check "metrics served" [ "$(fact metrics)" -gt 20 ]
check "the open-files limit raised" [ "$(fact nofile)" = raised ]
check "ExecReload" [ "$(fact reload)" = ok ]
check "Restart=on-failure after kill -9" [ "$(fact after_kill)" = 1:active ]
check "the ports are back" [ "$(fact ports_after_kill)" = "[vxp1=up,vxp2=up,vxt3=up,vxt4=down]" ]
check "the TAP has the MAC it had" same_mac
check "hosts ping after kill -9" [ "$(fact ping_after_kill)" = yes ]
check "the TAP answers after kill -9" [ "$(fact ping_tap_after_kill)" = yes ]
check_fastpath "the fast path back after kill -9" fastpath_on fastpath_after_kill
check_fastpath "the same tcx links: they outlived valed" same_links
check "WatchdogSec restarts a stopped valed" [ "$(fact after_watchdog)" = 2:active ]
check "the watchdog timeout is logged" [ "$(fact watchdog_logged)" = 1 ]
check "hosts ping after the watchdog" [ "$(fact ping_after_watchdog)" = yes ]
check "systemctl stop" [ "$(fact stopped)" = inactive ]
check "promiscuous mode undone" [ "$(fact promisc)" = 0 ]
check_fastpath "the pins removed" [ "$(fact pins_after_stop)" = gone ]
check_fastpath "the tcx links gone" [ "$(fact links_after_stop)" = 0 ]
check_fastpath "no program at vxp1's tc ingress" [ "$(fact tc_ingress_after_stop)" = 0 ]
check_fastpath "the upcall devices gone" [ "$(fact upcalls_after_stop)" = 0 ]
check "valed logged no error" [ "$(fact errors)" = 0 ]
check "valed logged no traceback" [ "$(fact tracebacks)" = 0 ]
check "its lines reach the journal with their priority" journal_parsed
if [ "$failed" != 0 ]; then
    say "facts:"; cat "$work/facts" >&2
    say "stderr in the container:"; cat "$work/inside.err" >&2
    exit 1
fi
say "all passed (systemd-analyze security: exposure $(fact exposure))"
