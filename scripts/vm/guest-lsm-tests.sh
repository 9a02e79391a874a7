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

# expect: ok (exit 0), eperm (refused with EPERM), then the command.
check() {
  name=$1; expect=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  case "$expect" in
    ok) [ $rc = 0 ] && { echo "PALCHECK $name ok"; return; } ;;
    eperm) case "$out" in *"not permitted"*) [ $rc != 0 ] && { echo "PALCHECK $name ok"; return; } ;; esac
           [ $rc = 126 ] && { echo "PALCHECK $name ok"; return; } ;;
  esac
  echo "PALCHECK $name FAIL expected $expect, got rc=$rc: $(echo "$out" | head -c 200 | tr '\n' ' ')"
}

# Runs a command as uid 1000 (busybox su as root asks no password).
as_user() { su -s /bin/sh user -c "$*"; }

# Waits up to 20 s until a command succeeds (detaching programs takes an RCU grace period).
eventually() { i=0; while ! "$@" >/dev/null 2>&1 && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done; }

# --- files and binaries the policies name ---------------------------------------------
mkdir -p /srv/tree/a/b /srv/data /opt/deny /opt/sym /opt/hard /opt/other /opt/allowed /opt/reader /opt/noexec/bin
echo s3cret >/srv/secret
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

palisade-noded --controlplane "$CP_URL" --pki /palisade/pki --name "$NODE" --label role=vm \
  --lsm-rescan-ms 500 >/tmp/noded.log 2>&1 &
NODED=$!

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

# --- a revision without the rules restores access ------------------------------------------
step lifted
check lifted-read ok cat /srv/secret
check lifted-exec ok /opt/deny/true
check lifted-other ok /opt/other/true

# --- programs stay pinned without the daemon; cleanup removes them ----------------------
step enforce-again
check again-denied eperm cat /srv/secret
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
