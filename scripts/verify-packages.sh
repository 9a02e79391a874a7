#!/usr/bin/env bash
# Checks the Debian packages made by scripts/package.sh, inside a clean Debian 12 root (a
# container of the lab base image, or a debootstrap'd chroot) that has systemd, and
# ideally man-db and bash-completion. Installs the three packages with dpkg, checks what
# they installed (binaries, config files, units, man pages, completions, the control
# plane's user), then removes and purges them and checks nothing is left. Exits non-zero
# with the reason at the first failure. Changes the root it runs in: use a throwaway one.
#
#   scripts/verify-packages.sh DEB_DIR
set -euo pipefail

dir=${1:-}
[ -n "$dir" ] && [ -d "$dir" ] || { echo "usage: $0 DEB_DIR (the directory scripts/package.sh wrote)" >&2; exit 2; }
dir=$(cd "$dir" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
PKGS=(palisade-controlplane palisade-noded palisadectl)

fail() { echo "verify-packages: FAILED: $*" >&2; exit 1; }
step() { echo ">> $*"; }
export LC_ALL=C.UTF-8 MANWIDTH=80
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# --- a clean root with what the checks need ----------------------------------------------
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
grep -q '^VERSION_ID="12"' /etc/os-release 2>/dev/null || fail "not a Debian 12 root: $(grep PRETTY_NAME /etc/os-release 2>/dev/null)"
for p in "${PKGS[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
    fail "$p is already installed here: run this in a clean root"
  fi
done
command -v systemd-analyze >/dev/null || fail "systemd is not installed in this root (systemd-analyze verify needs it)"
if grep -rqs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  fail "dpkg here drops man pages (path-exclude in /etc/dpkg/dpkg.cfg.d/): not a root the packages can be checked in"
fi

debs=()
for p in "${PKGS[@]}"; do
  found=("$dir/${p}_"*.deb)
  [ -e "${found[0]}" ] || fail "no ${p}_*.deb in $dir"
  [ "${#found[@]}" = 1 ] || fail "more than one ${p}_*.deb in $dir: ${found[*]}"
  debs+=("${found[0]}")
done

# --- install ----------------------------------------------------------------------------
step "dpkg -i ${debs[*]##*/}"
dpkg -i "${debs[@]}" >"$scratch/install.log" 2>&1 || { cat "$scratch/install.log" >&2; fail "dpkg -i"; }
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" | grep -q '^install ok installed$' || fail "$p is not installed after dpkg -i"
done
version=$(dpkg-query -W -f='${Version}' palisadectl)

step "installed files"
expect=(
  /usr/bin/palisade-controlplane /usr/bin/palisade-noded /usr/bin/palisadectl
  /lib/systemd/system/palisade-controlplane.service /lib/systemd/system/palisade-noded.service
  /etc/palisade/controlplane.toml /etc/palisade/noded.toml
  /usr/lib/sysusers.d/palisade.conf
)
for p in "${PKGS[@]}"; do
  b=$p
  expect+=(
    "/usr/share/man/man1/$b.1.gz"
    "/usr/share/bash-completion/completions/$b"
    "/usr/share/zsh/vendor-completions/_$b"
    "/usr/share/fish/vendor_completions.d/$b.fish"
    "/usr/share/doc/$p/copyright"
  )
done
expect+=(/usr/share/man/man1/palisadectl-apply.1.gz /usr/share/man/man1/palisadectl-pki-init.1.gz
  /usr/share/man/man1/palisade-noded-run.1.gz /usr/share/man/man1/palisade-noded-exec.1.gz)
for f in "${expect[@]}"; do [ -e "$f" ] || fail "$f was not installed"; done
for c in /etc/palisade/controlplane.toml /etc/palisade/noded.toml; do
  grep -qx "$c" /var/lib/dpkg/info/*.conffiles || fail "$c is not a conffile"
done
getent passwd palisade >/dev/null || fail "the control plane's user palisade was not created"
getent group palisade >/dev/null || fail "group palisade was not created"

# --- the binaries -----------------------------------------------------------------------
step "binaries run"
for b in palisade-controlplane palisade-noded palisadectl; do
  v=$("$b" --version) || fail "$b --version"
  [ "$v" = "$b ${version//\~/-}" ] || fail "$b --version says '$v', the package is $version"
  "$b" --help >/dev/null || fail "$b --help"
  if "$b" --help | grep -q 'generate-man'; then fail "$b --help shows the hidden generate-man"; fi
done
printf 'policy("verify");\nnetwork().ingress().deny(["10.0.0.0/8"]);\n' >"$scratch/verify.rhai"
palisadectl validate "$scratch/verify.rhai" >/dev/null || fail "palisadectl validate of a small policy"

step "config files parse (--check-config), as shipped and with every setting uncommented"
palisade-controlplane --config /etc/palisade/controlplane.toml --check-config ||
  fail "/etc/palisade/controlplane.toml does not check"
# The shipped noded.toml leaves the required node name to the administrator.
palisade-noded run --config /etc/palisade/noded.toml --name verify-node --check-config ||
  fail "/etc/palisade/noded.toml does not check"
sed 's/^# \([a-z][a-z0-9_-]* = \)/\1/' /etc/palisade/controlplane.toml >"$scratch/controlplane.toml"
sed 's/^# \([a-z][a-z0-9_-]* = \)/\1/' /etc/palisade/noded.toml >"$scratch/noded.toml"
palisade-controlplane --config "$scratch/controlplane.toml" --check-config >/dev/null ||
  fail "a setting shown in /etc/palisade/controlplane.toml does not check"
palisade-noded run --config "$scratch/noded.toml" --check-config >/dev/null ||
  fail "a setting shown in /etc/palisade/noded.toml does not check"

step "the control plane as user palisade answers palisadectl; its key stays group-readable across pki rotate"
chmod 0711 "$scratch"
pki=$scratch/pki
palisadectl pki init "$pki" --node verify-node >/dev/null || fail "palisadectl pki init"
chgrp palisade "$pki/controlplane.key" && chmod 0640 "$pki/controlplane.key"
palisadectl pki rotate "$pki" >/dev/null || fail "palisadectl pki rotate"
[ "$(stat -c '%G %a' "$pki/controlplane.key")" = "palisade 640" ] ||
  fail "pki rotate did not keep controlplane.key's group and mode: $(stat -c '%G %a' "$pki/controlplane.key")"
port=$((20000 + RANDOM % 20000))
install -d -o palisade -g palisade -m 0750 "$scratch/data"
# As the unit runs it (without the rest of the unit's sandbox: no systemd runs here).
setpriv --reuid=palisade --regid=palisade --init-groups -- \
  palisade-controlplane --config /etc/palisade/controlplane.toml --listen "127.0.0.1:$port" \
  --pki "$pki" --data "$scratch/data" >"$scratch/cp.log" 2>&1 &
cp_pid=$!
ok=
for _ in $(seq 50); do
  if palisadectl --controlplane "https://127.0.0.1:$port" --pki "$pki" list >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
kill "$cp_pid" 2>/dev/null || true
wait "$cp_pid" 2>/dev/null || true
[ -n "$ok" ] || { cat "$scratch/cp.log" >&2; fail "palisadectl list against the installed control plane"; }

# --- systemd units ----------------------------------------------------------------------
step "systemd-analyze verify"
units=(/lib/systemd/system/palisade-controlplane.service /lib/systemd/system/palisade-noded.service)
# With man-db here, verify also checks that the units' Documentation= man pages exist.
check_man=no
if command -v man >/dev/null; then check_man=yes; fi
if ! systemd-analyze verify --man="$check_man" "${units[@]}" >"$scratch/verify.log" 2>&1; then
  cat "$scratch/verify.log" >&2
  fail "systemd-analyze verify"
fi
if grep -i 'palisade' "$scratch/verify.log"; then fail "systemd-analyze verify warns about our units (above)"; fi
[ ! -s "$scratch/verify.log" ] || { echo "   (about other units, not ours:)"; sed 's/^/   /' "$scratch/verify.log"; }
if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  for u in "${units[@]}"; do
    echo "   $(basename "$u"): $(systemd-analyze security --offline=true "$u" 2>/dev/null | grep -i 'overall exposure' | sed 's/.*→ *//; s/^ *//')"
  done
fi
step "enable (offline) and the symlink purge must remove"
systemctl enable palisade-noded.service >/dev/null 2>&1 || fail "systemctl enable palisade-noded.service"
[ -L /etc/systemd/system/multi-user.target.wants/palisade-noded.service ] || fail "enabling made no symlink"

# --- man pages --------------------------------------------------------------------------
step "man pages"
pages=$(dpkg -L "${PKGS[@]}" | grep '^/usr/share/man/man1/.*\.1\.gz$')
n=0
for page in $pages; do
  gzip -t "$page" || fail "$page is not valid gzip"
  zcat "$page" | grep -q '^\.TH ' || fail "$page has no .TH header"
  zcat "$page" | grep -q '^\.SH NAME' || fail "$page has no NAME section"
  n=$((n + 1))
done
if command -v man >/dev/null; then
  for page in $pages; do
    man -l "$page" >"$scratch/page.txt" 2>"$scratch/page.err" || { cat "$scratch/page.err" >&2; fail "man -l $page"; }
    [ ! -s "$scratch/page.err" ] || { cat "$scratch/page.err" >&2; fail "man -l $page printed warnings"; }
  done
  [ "$(man -w palisadectl-apply)" = /usr/share/man/man1/palisadectl-apply.1.gz ] || fail "man -w palisadectl-apply"
  man palisadectl | grep -q 'palisadectl-apply(1)' || fail "man palisadectl does not list palisadectl-apply(1)"
  echo "   $n pages; each opens with man -l"
else
  echo "   $n pages; gzip and troff headers checked (no man-db here to render them)"
fi
if zcat /usr/share/man/man1/palisadectl.1.gz | grep -q 'generate'; then fail "palisadectl.1 mentions the hidden generate-man"; fi
# man (ours above, and systemd-analyze verify's Documentation= check) leaves formatted
# copies in man-db's cache: the checks' leftovers, not the packages'.
rm -f /var/cache/man/cat*/palisade*

# --- completions ------------------------------------------------------------------------
step "completions"
for b in palisade-controlplane palisade-noded palisadectl; do
  bash -n "/usr/share/bash-completion/completions/$b" || fail "bash -n of $b's completion"
  if command -v zsh >/dev/null; then zsh -n "/usr/share/zsh/vendor-completions/_$b" || fail "zsh -n _$b"; fi
  if command -v fish >/dev/null; then fish -n "/usr/share/fish/vendor_completions.d/$b.fish" || fail "fish -n $b.fish"; fi
  if grep -q 'generate-man' "/usr/share/bash-completion/completions/$b"; then fail "$b's completion offers generate-man"; fi
done
# What bash offers after `palisadectl ap<TAB>` and `palisadectl rollout <TAB>`.
offered=$(bash -c '
  [ -e /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
  . /usr/share/bash-completion/completions/palisadectl
  complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=(); _palisadectl palisadectl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"; echo "${COMPREPLY[*]}"; }
  complete_words palisadectl ap
  complete_words palisadectl rollout ""')
echo "$offered" | sed -n 1p | grep -qw apply || fail "bash completion of 'palisadectl ap' offers '$(echo "$offered" | sed -n 1p)'"
echo "$offered" | sed -n 2p | grep -qw pause || fail "bash completion of 'palisadectl rollout ' offers '$(echo "$offered" | sed -n 2p)'"
echo "   bash -n passes; 'palisadectl ap<TAB>' offers apply, 'palisadectl rollout <TAB>' offers pause"

# --- remove, purge ----------------------------------------------------------------------
step "dpkg -r"
dpkg -r "${PKGS[@]}" >"$scratch/remove.log" 2>&1 || { cat "$scratch/remove.log" >&2; fail "dpkg -r"; }
for b in palisade-controlplane palisade-noded palisadectl; do
  [ ! -e "/usr/bin/$b" ] || fail "/usr/bin/$b is still there after dpkg -r"
done
[ -e /etc/palisade/noded.toml ] || fail "dpkg -r removed the conffile /etc/palisade/noded.toml (only purge should)"

step "dpkg -P"
dpkg -P "${PKGS[@]}" >"$scratch/purge.log" 2>&1 || { cat "$scratch/purge.log" >&2; fail "dpkg -P"; }
for p in "${PKGS[@]}"; do
  if dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qv 'not-installed'; then
    fail "$p is still known to dpkg after purge: $(dpkg-query -W -f='${Status}' "$p")"
  fi
done
[ ! -e /etc/palisade ] || fail "/etc/palisade is still there after purge: $(ls -A /etc/palisade)"
[ ! -e /var/lib/palisade ] || fail "/var/lib/palisade is still there after purge: $(ls -A /var/lib/palisade)"
left=$(find / -xdev \( -path /proc -o -path "$dir" -o -path "$here" -o -path "$scratch" \) -prune \
  -o -name '*palisade*' -print 2>/dev/null | head -20)
[ -z "$left" ] || fail "left behind after purge:"$'\n'"$left"
echo "   nothing named *palisade* is left (the system user palisade stays, as Debian keeps system users)"

echo "verify-packages: OK: ${PKGS[*]} $version"
