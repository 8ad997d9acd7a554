#!/bin/bash
# The Debian package under a real systemd: makes a fresh Debian (mmdebstrap: minbase,
# systemd, the package's dependencies and the check's own tools), boots it in a throwaway
# container (systemd-nspawn, no network but its own loopback), installs the .deb there
# with apt-get, starts valed.service with nothing else done, and checks what only a
# package and systemd show:
#
#   the package          apt-get install ./vale_*.deb: valed and valectl on the PATH, the
#                        unit enabled but not started, the group vale, man pages,
#                        completion, /etc/default/valed
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
#   no kernel feature    with packet sockets withheld (RestrictAddressFamilies=), then
#                        without /dev/net/tun: valed fails with status 69 and one error
#                        line naming what is missing, and is not restarted
#   removal              apt-get remove keeps the configuration; apt-get purge leaves
#                        nothing of the package but the group vale (Debian keeps groups)
#
# Needs root, systemd-nspawn (Debian: systemd-container) and mmdebstrap, and Debian's
# mirror for the fresh system; without the first three it exits 77 (skipped). Given no
# .deb, it builds one from this tree (make deb: dpkg-buildpackage and dh-virtualenv, and
# PyPI for the venv). The fast path's checks also need bpftool, bpffs and a vale built
# with its BPF object, else they are skipped (SKIP). The container gets CAP_BPF and
# bpf(2), which nspawn keeps from it by default, and a bpffs of its own (not the host's:
# no pins in common with a valed there), mounted under the work directory and bound to
# its /sys/fs/bpf. Everything made is named vx<pid>... and removed at the end; only the
# container's own PIDs are signalled.
# Usage: systemd/check.sh [vale_VERSION_ARCH.deb]       (make check-systemd)
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
command -v mmdebstrap >/dev/null || { say "needs mmdebstrap (apt-get install mmdebstrap)"; exit 77; }

deb=${1:-}
if [ -z "$deb" ]; then
    for tool in dpkg-buildpackage dh_virtualenv; do
        command -v "$tool" >/dev/null || { say "needs $tool to build the package (make deb)"; exit 77; }
    done
    say "building the package (make deb)"
    make -s -C "$here" deb DEB_OUT="$work" > "$work/build.log" 2>&1 \
        || { tail -30 "$work/build.log" >&2; say "make deb failed"; exit 1; }
    deb=$(tail -1 "$work/build.log")
fi
deb=$(realpath "$deb")
[ -f "$deb" ] || { say "no package $deb"; exit 1; }
say "package: $deb"

# A fresh Debian of the machine's release: minbase, systemd, what the package depends on
# (first of alternatives, no versions: apt-get checks those in the container), and the
# check's tools (ip and tc, ping, bpftool, python3 for reading JSON).
depends=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g' | grep .)
tools="systemd systemd-sysv iproute2 iputils-ping bpftool python3"
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
say "making a fresh $suite (mmdebstrap)"
root="$work/root"
timeout 900 mmdebstrap --quiet --variant=minbase \
    --include="$(echo $tools $depends | tr ' ' ',')" "$suite" "$root" > "$work/mmdebstrap.log" 2>&1 \
    || { tail -30 "$work/mmdebstrap.log" >&2; say "mmdebstrap failed"; exit 1; }
# Machine settings, not vale's: the watchdog's SIGABRT writes no core; the check's target
# is what boots.
mkdir -p "$root/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultLimitCORE=0\n' > "$root/etc/systemd/system.conf.d/10-check.conf"

nspawn_bpf=()
contents=$(dpkg-deb -c "$deb")
if ! grep -q '/vale/_bpf\.cpython' <<< "$contents"; then
    fastpath="vale was built without it"
elif ! command -v bpftool >/dev/null; then
    fastpath="needs bpftool"
elif ! { mkdir "$work/bpffs" && mount -t bpf -o mode=0700 bpf "$work/bpffs"; }; then
    fastpath="no bpffs here"
else
    nspawn_bpf=(--capability=CAP_BPF --system-call-filter=bpf
                --bind="$work/bpffs:/sys/fs/bpf")
fi

cat > "$root/etc/systemd/system/$name.target" <<EOF
[Unit]
Description=vale's systemd check
Requires=sysinit.target
After=sysinit.target
EOF
cat > "$work/inside.sh" <<'EOF'
# Run in the container by nsenter: one line "name value" per fact the host checks.
set -u
export DEBIAN_FRONTEND=noninteractive
ctl=valectl
fact() { printf '%s %s\n' "$1" "$2"; }
# The package, as an operator installs it (offline: the fresh system has its dependencies)
# and what is there before, to compare with what a purge leaves.
files() {                       # every file and directory, but the volatile and dpkg's own
    find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg \
        -o -path /var/lib/systemd -o -path /var/tmp \) -prune -o -print | sort
}
files > /run/check-files-before
if apt-get install -y -q /run/vale.deb > /run/check-apt.log 2>&1; then
    fact installed ok
else
    fact installed failed; cat /run/check-apt.log >&2
fi
fact on_path "$(command -v valed):$(command -v valectl)"
fact enabled "$(systemctl is-enabled valed)"
fact started_by_install "$(systemctl is-active valed)"
fact group "$(getent group vale | cut -d: -f1)"
fact package_files "$(for f in /usr/share/man/man8/valed.8.gz /usr/share/man/man8/valectl.8.gz \
    /usr/share/bash-completion/completions/valectl /usr/share/zsh/vendor-completions/_valectl \
    /etc/default/valed /usr/share/doc/vale/operations.md /usr/share/vale/prometheus/alerts.yml \
    /usr/share/vale/grafana/vale.json; do [ -s "$f" ] || echo "$f"; done | tr '\n' ' ')"
systemctl start valed && fact start ok || fact start failed
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
# The installed bash completion, as <TAB> after "valectl detach vale0:vx" runs it: the
# ports, from valed (bash replaces what follows the colon).
fact completion "$(bash -c 'compopt() { :; }
    . /usr/share/bash-completion/completions/valectl
    COMP_LINE="valectl detach vale0:vx" COMP_POINT=23 COMPREPLY=()
    _valectl_completion valectl; echo "${COMPREPLY[*]}"' 2>&1)"
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
fact metrics "$(python3 -c "import urllib.request as u; print(sum(l.startswith(b'vale_') for l in u.urlopen('http://127.0.0.1:9466/metrics', timeout=5)))")"
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
# A kernel without packet sockets, then one without TUN, as valed sees them: the family
# withheld (socket() fails EAFNOSUPPORT), no /dev/net/tun. One error line each, status
# 69, and no restart (RestartPreventExitStatus=).
without() {                     # without NAME DROP-IN-LINES: a start of valed with them
    mkdir -p /run/systemd/system/valed.service.d
    printf '[Service]\n%s\n' "$2" > /run/systemd/system/valed.service.d/50-without.conf
    systemctl daemon-reload
    local id lines
    systemctl start valed 2>/dev/null   # (which sets NRestarts back to 0)
    sleep 3                         # RestartSec=1s: time for a restart, if there were one
    id=$(systemctl show -p InvocationID --value valed)
    lines=$(journalctl _SYSTEMD_INVOCATION_ID="$id" _SYSTEMD_UNIT=valed.service -o cat --no-pager)
    fact "without_$1" "$(systemctl show -p ActiveState --value valed):$(systemctl show -p ExecMainStatus --value valed):$(restarts)"
    fact "without_$1_lines" "$(printf '%s\n' "$lines" | grep -c .)"
    fact "without_$1_says" "$(journalctl _SYSTEMD_INVOCATION_ID="$id" _SYSTEMD_UNIT=valed.service -p err -o cat --no-pager | grep -c "^ERROR valed cannot run without $1 ")"
    rm /run/systemd/system/valed.service.d/50-without.conf
    systemctl daemon-reload
    systemctl reset-failed valed
}
without AF_PACKET "RestrictAddressFamilies=
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6"
without TUN "TemporaryFileSystem=/dev/net:ro"
# Removal keeps the configuration, purging drops it; the group stays.
apt-get remove -y -q vale > /run/check-remove.log 2>&1 && fact removed ok || fact removed failed
fact kept_on_remove "$(ls /var/lib/vale 2>/dev/null | tr '\n' ' ')$(test -e /etc/default/valed && echo default)"
apt-get purge -y -q vale > /run/check-purge.log 2>&1 && fact purged ok || fact purged failed
fact left_after_purge "$(files | comm -13 /run/check-files-before - | tr '\n' ' ')"
fact unit_after_purge "$(systemctl cat valed >/dev/null 2>&1 && echo there || echo gone)"
fact group_after_purge "$(getent group vale | cut -d: -f1)"
EOF

say "booting a container"
systemd-nspawn -D "$root" --private-network --register=no --keep-unit -M "$name" \
    --bind-ro="$deb:/run/vale.deb" \
    --bind-ro="$work/inside.sh:/run/check-inside.sh" "${nspawn_bpf[@]}" \
    --boot -- "systemd.unit=$name.target" systemd.firstboot=off \
    > "$work/console.log" 2>&1 < /dev/null &
nspawn_pid=$!
booted=""
for _ in $(seq 150); do
    child=$(ps -o pid= --ppid "$nspawn_pid" | head -1 | tr -d ' ') || true
    if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
        leader=$child                       # the container's init: ours to signal
        if nsenter -t "$leader" -a systemctl is-active -q "$name.target" 2>/dev/null; then
            booted=yes
            break
        fi
    fi
    sleep 0.2
done
if [ -z "$booted" ]; then
    say "the container did not boot within 30 s:"; cat "$work/console.log" >&2
    exit 1
fi

timeout 420 nsenter -t "$leader" -a bash /run/check-inside.sh > "$work/facts" \
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
check "apt-get install ./$(basename "$deb") in a fresh $suite" [ "$(fact installed)" = ok ]
check "valed and valectl on the PATH" [ "$(fact on_path)" = /usr/sbin/valed:/usr/bin/valectl ]
check "the unit enabled, not started" [ "$(fact enabled):$(fact started_by_install)" = enabled:inactive ]
check "the group vale (sysusers.d)" [ "$(fact group)" = vale ]
check "man pages, completion, /etc/default/valed, docs, alerts, dashboard" [ -z "$(fact package_files)" ]
check "systemctl start valed, nothing else done" [ "$(fact start)" = ok ]
check "Type=notify: active after READY" [ "$(fact active)" = active ]
check "/run/vale is 0755" [ "$(fact rundir)" = 755 ]
check "the socket is 0660 root:vale" [ "$(fact socket)" = 660:root:vale ]
check "two hosts ping through vale0" [ "$(fact ping)" = yes ]
check "a TAP valed made answers" [ "$(fact ping_tap)" = yes ]
check "bash completes valed's ports" [ "$(fact completion)" = "vxp1 vxp2 vxt3" ]
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
check "without AF_PACKET: failed, status 69, not restarted" [ "$(fact without_AF_PACKET)" = failed:69:0 ]
check "without AF_PACKET: one error line naming it" [ "$(fact without_AF_PACKET_lines):$(fact without_AF_PACKET_says)" = 1:1 ]
check "without TUN: failed, status 69, not restarted" [ "$(fact without_TUN)" = failed:69:0 ]
check "without TUN: one error line naming it" [ "$(fact without_TUN_lines):$(fact without_TUN_says)" = 1:1 ]
check "apt-get remove keeps the configuration" [ "$(fact removed):$(fact kept_on_remove)" = "ok:state.json default" ]
check "apt-get purge leaves nothing behind" [ "$(fact purged):$(fact left_after_purge)" = "ok:" ]
check "no unit after the purge" [ "$(fact unit_after_purge)" = gone ]
check "the group vale stays (Debian keeps system groups)" [ "$(fact group_after_purge)" = vale ]
if [ "$failed" != 0 ]; then
    say "facts:"; cat "$work/facts" >&2
    say "stderr in the container:"; cat "$work/inside.err" >&2
    exit 1
fi
say "all passed (systemd-analyze security: exposure $(fact exposure))"
