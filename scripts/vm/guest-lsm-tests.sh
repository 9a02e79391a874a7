#!/bin/sh
# Runs inside the VM tier's guest as /palisade/run.sh (see tests/integration/tests/lsm_vm.rs).
# Starts the real node daemon against the control plane on the host, then goes through the
# phases: before each one it asks the host (GET http://10.0.2.2:$SYNC_PORT/step/NAME) to
# apply that phase's policy revision and wait until this node enforces it. Every check
# prints one line: "PALCHECK <name> ok" or "PALCHECK <name> FAIL <details>".
. /palisade/env

step() {
  echo "PALSTEP $1"
  r=$(wget -q -O - "http://10.0.2.2:$SYNC_PORT/step/$1" 2>&1)
  [ "$r" = ok ] || { echo "PALCHECK step-$1 FAIL host said: $r"; echo "---- noded log (tail) ----"; tail -n 60 /tmp/noded.log; exit 1; }
}

# expect: ok (exit 0), eperm (refused with EPERM), map-refused (the dynamic loader could not
# map a program or library: glibc keeps no errno for it, so the host checks the audit event
# that names the rule), then the command.
check() {
  name=$1; expect=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  case "$expect" in
    ok) [ $rc = 0 ] && { echo "PALCHECK $name ok"; return; } ;;
    eperm) case "$out" in *"not permitted"*) [ $rc != 0 ] && { echo "PALCHECK $name ok"; return; } ;; esac
           [ $rc = 126 ] && { echo "PALCHECK $name ok"; return; } ;;
    map-refused) case "$out" in *"failed to map segment"*) [ $rc != 0 ] && { echo "PALCHECK $name ok"; return; } ;; esac ;;
  esac
  echo "PALCHECK $name FAIL expected $expect, got rc=$rc: $(echo "$out" | head -c 200 | tr '\n' ' ')"
}

# Runs a command as uid 1000 (busybox su as root asks no password).
as_user() { su -s /bin/sh user -c "$*"; }

# Waits up to 20 s until a command succeeds (detaching programs takes an RCU grace period).
eventually() { i=0; while ! "$@" >/dev/null 2>&1 && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done; }

# deep BASE N: the directory N - 1 levels below BASE (so a file in it is N levels below).
deep() { p=$1; i=1; while [ $i -lt $2 ]; do p=$p/d; i=$((i+1)); done; echo "$p"; }

LDSO=/lib64/ld-linux-x86-64.so.2
DEPTHS="1 31 32 33 100 1000"

# The property phase: /palisade/prop.txt (written by the host) lists directories and files
# to create now, and checks to run once the host applied its random policy; the host
# compares each "PALPROP <idx> <outcome>" line with plan::files' decision.
prop_setup() {
  while read -r kind a b c; do
    case $kind in
      dir) mkdir -p "$a" ;;
      file) echo data >"$a" ;;
      exec) printf '#!/bin/sh\nexit 0\n' >"$a"; chmod +x "$a" ;;
    esac
  done </palisade/prop.txt
}
prop_checks() {
  while read -r kind idx op path; do
    [ "$kind" = check ] || continue
    case $op in
      read) out=$(cat "$path" 2>&1 >/dev/null); rc=$? ;;
      write) out=$( { echo x >>"$path"; } 2>&1); rc=$? ;;
      exec) out=$("$path" 2>&1 </dev/null); rc=$? ;;
    esac
    if [ $rc = 0 ]; then r=ok
    elif [ $rc = 126 ]; then r=eperm
    else case "$out" in *"not permitted"*) r=eperm ;; *) r="rc$rc" ;; esac
    fi
    echo "PALPROP $idx $r"
  done </palisade/prop.txt
}

# --- files and binaries the policies name ---------------------------------------------
mkdir -p /srv/tree/a/b /srv/data /opt/deny /opt/sym /opt/hard /opt/other /opt/allowed /opt/reader /opt/noexec/bin
echo s3cret >/srv/secret
echo burst >/srv/burst
echo keep >/srv/wfile
echo nested >/srv/tree/a/b/nested.txt
chmod -R a+rX /srv
chmod a+rw /srv/secret
ln -s /srv/tree/a/b/nested.txt /tmp/link-nested
for d in deny other allowed; do cp /bin/busybox /opt/$d/true; done
cp /bin/busybox /opt/noexec/bin/true
cp /bin/busybox /opt/reader/cat
ln -s /opt/deny/true /opt/sym/true
ln /opt/deny/true /opt/hard/true

# Deep trees: a file N levels below each ruled directory (and below unruled ones).
mkdir -p /srv/deepr /srv/deepw /srv/free /opt/free /opt/copy /opt/copied /tmp/x
for n in $DEPTHS; do
  mkdir -p "$(deep /srv/deepr $n)" "$(deep /srv/deepw $n)" "$(deep /tmp $n)" \
    "$(deep /srv/free $n)" "$(deep /opt/free $n)"
  echo deep >"$(deep /srv/deepr $n)/r$n"
  echo deep >"$(deep /srv/deepw $n)/w$n"
  echo deep >"$(deep /srv/free $n)/r$n"
  cp /bin/busybox "$(deep /tmp $n)/true"
  cp /bin/busybox "$(deep /opt/free $n)/true"
done
# Beyond the walk's bound (4096 levels up to the filesystem's root), with relative names.
mkdir -p /srv/deepr/bound /srv/free/b4091 /srv/free/b4092
palvm-helper deep-mkdir /srv/deepr/bound 4100 r
palvm-helper deep-mkdir /srv/free/b4091 4091 r
palvm-helper deep-mkdir /srv/free/b4092 4092 r
# Executable mappings: a program and a library inside the exec-denied /tmp.
cp /usr/local/bin/palvm-helper /tmp/x/palvm-helper
cp /usr/local/lib/palvm-lib.so /tmp/x/palvm-lib.so
cp /bin/busybox /tmp/x/true
printf '#!/bin/sh\necho script ran\n' >/tmp/x/script.sh
chmod +x /tmp/x/script.sh
cp /usr/local/bin/palvm-helper /opt/deny/palvm-helper
cp /usr/local/bin/palvm-helper /opt/copy/palvm-helper
chmod -R a+rX /srv
prop_setup

# start_daemon [FLAG...]: the node daemon, in the background (NODED), logging to /tmp/noded.log.
start_daemon() {
  palisade-noded --controlplane "$CP_URL" --pki /palisade/pki --name "$NODE" --label role=vm \
    --lsm-rescan-ms 500 "$@" >>/tmp/noded.log 2>&1 &
  NODED=$!
}
METRICS=127.0.0.1:9465
metrics() { wget -q -O - "http://$METRICS/metrics"; }
# Waits up to 180 s (the guest is emulated) until the daemon's session is up.
connected() {
  i=0
  while [ $i -lt 360 ]; do
    metrics 2>/dev/null | grep -q '^palisade_node_session_connected 1' && return 0
    sleep 0.5; i=$((i+1))
  done
  return 1
}

start_daemon

# A descriptor opened for writing before any rule exists (see gap-open-before-rule-writes).
echo held >/srv/deepw/held.txt
exec 7>>/srv/deepw/held.txt

# --- enforce --------------------------------------------------------------------------
step enforce
check read-denied eperm cat /srv/secret
check read-denied-via-relative-path eperm sh -c 'cd /srv && cat ./secret'
check read-excepted-binary ok /opt/reader/cat /srv/secret
check read-excepted-uid ok as_user cat /srv/secret
check write-denied eperm sh -c 'echo x >>/srv/wfile'
check write-truncate-denied eperm truncate -s 0 /srv/wfile
check cp-over-write-protected eperm cp /srv/tree/a/b/nested.txt /srv/wfile
check write-protected-readable ok cat /srv/wfile
check write-protected-unlink-denied eperm rm -f /srv/wfile
check subtree-nested eperm cat /srv/tree/a/b/nested.txt
check subtree-symlink eperm cat /tmp/link-nested
echo fresh >/srv/tree/created-later.txt
check subtree-file-created-later eperm cat /srv/tree/created-later.txt
check subtree-hardlink-out-denied eperm ln /srv/tree/a/b/nested.txt /srv/escape
check subtree-move-out-denied eperm mv /srv/tree/a/b/nested.txt /srv/escape
check exec-denied eperm /opt/deny/true
check exec-denied-symlink eperm /opt/sym/true
check exec-denied-hardlink eperm /opt/hard/true
check exec-other-copy ok /opt/other/true
check exec-file-rule-subtree eperm /opt/noexec/bin/true
check exec-file-rule-read-ok ok sh -c 'cat /opt/noexec/bin/true >/dev/null'
# Re-resolution: replace the read-protected file by rename (a new inode at the path).
echo replaced >/srv/secret.new
check replace-by-rename ok mv /srv/secret.new /srv/secret
sleep 3
check replaced-file-protected eperm cat /srv/secret

# Every operation at every depth below a ruled directory; the same depths below unruled ones.
for n in $DEPTHS; do
  dr=$(deep /srv/deepr $n); dw=$(deep /srv/deepw $n); dx=$(deep /tmp $n)
  df=$(deep /srv/free $n); do=$(deep /opt/free $n)
  check deep-read-$n eperm cat "$dr/r$n"
  check deep-write-$n eperm sh -c "echo x >>'$dw/w$n'"
  check deep-create-$n eperm sh -c ": >'$dw/new$n'"
  check deep-truncate-$n eperm truncate -s 0 "$dw/w$n"
  check deep-rename-$n eperm mv "$dw/w$n" "$dw/moved$n"
  check deep-unlink-$n eperm rm -f "$dw/w$n"
  check deep-exec-$n eperm "$dx/true"
  check deep-free-read-$n ok cat "$df/r$n"
  check deep-free-write-$n ok sh -c "echo x >>'$df/r$n'"
  check deep-free-exec-$n ok "$do/true"
done
# Past the bound nothing can be decided: denied (fail closed) while a subtree rule for the
# operation exists, inside a ruled tree or not; within the bound, decided as usual.
check bound-ruled-denied eperm palvm-helper deep-read /srv/deepr/bound 4100 r
check bound-free-within-ok ok palvm-helper deep-read /srv/free/b4091 4091 r
check bound-free-beyond-denied eperm palvm-helper deep-read /srv/free/b4092 4092 r

# Exec means executable mapping too: the loader, dlopen, mmap and mprotect of denied files.
check dynamic-program-runs ok palvm-helper true
check loader-runs-program-outside ok $LDSO /usr/local/bin/palvm-helper true
check loader-exec-denied-tree map-refused $LDSO /tmp/x/palvm-helper true
check loader-exec-deny-listed map-refused $LDSO /opt/deny/palvm-helper true
check exec-deny-listed-dynamic eperm /opt/deny/palvm-helper true
check dlopen-outside-ok ok palvm-helper dlopen /usr/local/lib/palvm-lib.so
check dlopen-denied-tree map-refused palvm-helper dlopen /tmp/x/palvm-lib.so
check mmap-exec-outside-ok ok palvm-helper mmap-exec /usr/local/lib/palvm-lib.so
check mmap-exec-denied-tree eperm palvm-helper mmap-exec /tmp/x/palvm-lib.so
check mprotect-outside-ok ok palvm-helper mprotect /usr/local/lib/palvm-lib.so
check mprotect-denied-tree eperm palvm-helper mprotect /tmp/x/palvm-lib.so
check exec-denied-tree-readable ok cat /tmp/x/palvm-lib.so
# What an exec rule does not stop (docs/policy-language.md), pinned so the docs stay true.
check gap-script-exec-denied eperm /tmp/x/script.sh
check gap-script-via-interpreter-runs ok sh /tmp/x/script.sh
check gap-copy-out-of-tree-runs ok sh -c 'cp /tmp/x/true /opt/copied/true && /opt/copied/true'
check gap-memfd-from-denied-tree-runs ok palvm-helper memfd-exec /tmp/x/true true
check gap-anonymous-exec-memory ok palvm-helper anon-exec
check gap-open-before-rule-writes ok sh -c 'echo more >&7'
check write-after-rule-denied eperm sh -c 'echo more >>/srv/deepw/held.txt'
mkdir -p /srv/deepr/mnt /mnt/bind
mount -t tmpfs other /srv/deepr/mnt && echo other-fs >/srv/deepr/mnt/f
check gap-mount-below-ruled-dir-readable ok cat /srv/deepr/mnt/f
umount /srv/deepr/mnt
mount -o bind "$(deep /srv/deepr 31)" /mnt/bind
check bind-mount-of-ruled-tree-denied eperm cat /mnt/bind/r31
umount /mnt/bind

# --- a protected directory removed and recreated ----------------------------------------
step recreate
rm -rf /srv/data
mkdir -p /srv/data
echo new >/srv/data/file
sleep 3
check recreated-dir-protected eperm cat /srv/data/file

# --- audit mode: everything passes, would-deny is reported --------------------------------
step audit
check audit-read-passes ok cat /srv/secret
check audit-exec-passes ok /opt/deny/true
step audit-events

# --- allow-only exec --------------------------------------------------------------------
step allow-only
check allow-only-listed ok /opt/allowed/true
check allow-only-busybox ok ls /
check allow-only-unlisted eperm /opt/other/true
check allow-only-copy-of-listed eperm /opt/copy/palvm-helper true
check allow-only-dynamic-listed ok palvm-helper true
check allow-only-listed-dlopen ok palvm-helper dlopen /usr/local/lib/palvm-lib.so
check allow-only-memfd eperm palvm-helper memfd-exec /bin/busybox true
check allow-only-loader-listed ok $LDSO /usr/local/bin/palvm-helper true
check allow-only-loader-unlisted map-refused $LDSO /opt/copy/palvm-helper true
step allow-only-events

# --- random deep paths: the kernel against plan::files (the host compares) ---------------
step prop
prop_checks

# --- a revision without the rules restores access ------------------------------------------
step lifted
check lifted-read ok cat /srv/secret
check lifted-exec ok /opt/deny/true
check lifted-other ok /opt/other/true

# --- programs stay pinned without the daemon; cleanup removes them ----------------------
step enforce-again
check again-denied eperm cat /srv/secret
# Lost events are counted, exactly, with the LSM ring buffer made small: the daemon is
# restarted with --lsm-ringbuf-bytes 4096 (one page: 17 events), enforces its cached
# desired state and reconnects; then, with it stopped, a burst of denied opens overruns the
# per-CPU budget and, certainly, the ring buffer; the host checks, through `palisadectl
# audit tail`, that received + lost = generated with both kinds of loss.
kill $NODED; wait $NODED 2>/dev/null
start_daemon --lsm-ringbuf-bytes 4096 --metrics $METRICS
check small-ring-daemon-connected ok connected
check small-ring-size-in-force ok sh -c "grep 'BPF-LSM file/exec programs attached' /tmp/noded.log | grep -q 'ringbuf_bytes=4096'"
check exec-loss-metric ok sh -c "wget -q -O - http://$METRICS/metrics | grep -q '^palisade_node_exec_events_lost_total [0-9]'"
check small-ring-again-denied eperm cat /srv/secret
kill -STOP $NODED
burst=$(palvm-helper burst /srv/burst 7)
kill -CONT $NODED
set -- $burst
echo "PALBURST $burst"
check burst-all-refused ok test "$2" -gt 0 -a "$2" = "$4"
step "burst-$2"
kill $NODED; wait $NODED 2>/dev/null
check pinned-after-daemon-exit eperm cat /srv/secret
check cleanup ok palisade-noded cleanup
eventually cat /srv/secret
check after-cleanup-read ok cat /srv/secret
check after-cleanup-exec ok /opt/deny/true
check pins-removed ok sh -c '! ls /sys/fs/bpf/palisade/v1/lsm-v1/*/* 2>/dev/null'

echo "---- noded log (tail) ----"
tail -n 30 /tmp/noded.log
step done
