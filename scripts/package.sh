#!/usr/bin/env bash
# Builds the Debian packages of the three binaries, with dpkg-deb alone (no debhelper, no
# cargo-deb): palisade-controlplane and palisade-noded (each with its systemd unit and its
# default config file in /etc/palisade) and palisadectl. Man pages and shell completions
# are printed by the packaged binaries themselves from their clap definitions; unit files,
# config files and maintainer scripts are in packaging/. Shared-library dependencies are
# computed from the binaries (NEEDED entries, versioned symbols, the build machine's dpkg
# symbols files) as dpkg-shlibdeps would.
#
#   scripts/package.sh [--profile release|debug] [--out DIR]
#
# Defaults: release, target/debian. Prints the paths of the packages made. Idempotent: each
# run stages everything again and replaces the packages of any version in DIR.
# Needs cargo, dpkg-deb and binutils (objdump, strip): scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

profile=release
out=target/debian
usage() { sed -n '10,14s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
    --profile=*) profile=${1#*=}; shift ;;
    --out) out=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
    --out=*) out=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "package.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) cargo_profile=(--release) ;;
  debug) cargo_profile=() ;;
  *) echo "package.sh: --profile is release or debug, not '$profile'" >&2; exit 2 ;;
esac
[ -n "$out" ] || { echo "package.sh: --out needs a directory" >&2; exit 2; }

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
for tool in cargo dpkg-deb dpkg objdump strip gzip; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "package.sh: $tool not found: run scripts/install-deps.sh" >&2
    exit 1
  }
done

target=${CARGO_TARGET_DIR:-target}
bins=$target/$profile
stage_root=$target/debian-stage
arch=$(dpkg --print-architecture)
# The workspace version; a semver pre-release (0.2.0-rc.1) sorts before its release in
# Debian as 0.2.0~rc.1.
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
version=${version//-/\~}
license=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^license *= *"\(.*\)"/\1/p' Cargo.toml)
maintainer=${PALISADE_DEB_MAINTAINER:-"Palisade developers <palisade@packages.invalid>"}
echo ">> building the binaries ($profile)"
# The control plane with its etcd store (several replicas on one etcd cluster).
cargo build "${cargo_profile[@]}" -p palisade-controlplane -p palisade-noded -p palisadectl --bins \
  --features palisade-controlplane/etcd

# Files and man pages get this date, so that the same sources give the same packages. Set
# after the build: ring's build script reruns whenever SOURCE_DATE_EPOCH changes.
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

# --- shared-library dependencies --------------------------------------------------------

# The package owning a library path (dpkg knows /lib or /usr/lib, whichever it shipped).
owner_of() {
  local p=$1 alt
  case "$p" in /usr/*) alt=${p#/usr} ;; *) alt=/usr$p ;; esac
  { dpkg-query -S "$p" 2>/dev/null || dpkg-query -S "$alt" 2>/dev/null; } |
    sed -n '1s/^\([^:,]*\)\(:[a-z0-9]*\)\{0,1\}: .*/\1/p'
}

# "PKG MIN" for one NEEDED soname of binary $1: MIN is the highest version the package's
# symbols file gives any versioned symbol the binary uses from it; without a symbols
# file, the version its shlibs file gives (none if neither says).
dep_for() {
  local bin=$1 soname=$2 path pkg info min v
  path=$(ldconfig -p | awk -v so="$soname" '$1 == so && /x86-64/ { print $NF; exit }')
  [ -n "$path" ] || { echo "package.sh: $bin needs $soname, which ldconfig does not know" >&2; return 1; }
  pkg=$(owner_of "$(readlink -f "$path")")
  [ -n "$pkg" ] || pkg=$(owner_of "$path")
  [ -n "$pkg" ] || { echo "package.sh: no Debian package owns $path ($soname)" >&2; return 1; }
  info=/var/lib/dpkg/info/$pkg:$arch
  [ -e "$info.symbols" ] || info=/var/lib/dpkg/info/$pkg
  min=
  if [ -e "$info.symbols" ]; then
    for v in $(
      objdump -T "$bin" | awk '$0 ~ /\*UND\*/ { v = $(NF - 1); gsub(/[()]/, "", v); if (v ~ /_/) print $NF "@" v }' |
        awk -v so="$soname" 'NR == FNR { used[$1] = 1; next }
          /^[^ |*#]/ { cur = $1; next }
          cur == so && /^ / && ($1 in used) { print $2 }' - "$info.symbols" | sort -u
    ); do
      if [ -z "$min" ] || dpkg --compare-versions "$v" gt "$min"; then min=$v; fi
    done
  fi
  if [ -z "$min" ] && [ -e "$info.shlibs" ]; then
    min=$(awk -v lib="${soname%%.so*}" '$1 == lib && NF > 3 { print $NF; exit }' "$info.shlibs" | tr -d ')')
  fi
  echo "$pkg $min"
}

# The Depends field of binary $1: one entry per package (libc6 ships libc, libm and the
# loader), with the highest minimum version of its libraries.
depends_of() {
  local bin=$1 soname pkg min deps=()
  local -A best=()
  for soname in $(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }'); do
    read -r pkg min <<<"$(dep_for "$bin" "$soname")"
    if [ -z "${best[$pkg]+set}" ]; then
      best[$pkg]=$min
    elif [ -n "$min" ] && { [ -z "${best[$pkg]}" ] || dpkg --compare-versions "$min" gt "${best[$pkg]}"; }; then
      best[$pkg]=$min
    fi
  done
  for pkg in $(printf '%s\n' "${!best[@]}" | sort); do
    if [ -n "${best[$pkg]}" ]; then deps+=("$pkg (>= ${best[$pkg]})"); else deps+=("$pkg"); fi
  done
  local IFS=,
  echo "${deps[*]}" | sed 's/,/, /g'
}

# --- staging ----------------------------------------------------------------------------

# The crates built into a package's binary and their licenses, for its copyright file.
copyright() {
  local crate=$1
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Palisade
Comment: The binary is statically linked with these Rust crates (name, version,
 license as the crate declares it):
EOF
  cargo tree --offline --locked -p "$crate" -e normal,no-proc-macro --prefix none \
    --format '{p}: {l}' | sed 's/ (\/[^)]*)//; s/ (\*)$//' | sort -u | sed 's/^/ /'
  cat <<EOF

Files: *
Copyright: The Palisade developers
License: $license

License: Apache-2.0
 On Debian systems, the complete text of the Apache License, Version 2.0, is in
 /usr/share/common-licenses/Apache-2.0.
EOF
}

# stage PKG BIN: a fresh package root with the binary (debug info stripped: backtraces keep
# their symbols), its man pages and completion scripts, its copyright file.
stage() {
  local pkg=$1 bin=$2 root=$stage_root/$1 man shell
  rm -rf "$root"
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/doc/$pkg" "$root/usr/share/man/man1"
  strip --strip-debug -o "$root/usr/bin/$bin" "$bins/$bin"
  chmod 0755 "$root/usr/bin/$bin"
  man=$(mktemp -d)
  "$root/usr/bin/$bin" generate-man "$man" >/dev/null
  for page in "$man"/*.1; do
    gzip -9n -c "$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
  done
  rm -rf "$man"
  install -d "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
  "$root/usr/bin/$bin" completion bash >"$root/usr/share/bash-completion/completions/$bin"
  "$root/usr/bin/$bin" completion zsh >"$root/usr/share/zsh/vendor-completions/_$bin"
  "$root/usr/bin/$bin" completion fish >"$root/usr/share/fish/vendor_completions.d/$bin.fish"
  copyright "$pkg" >"$root/usr/share/doc/$pkg/copyright"
}

# daemon_files PKG CONFIG: its unit, its config file (a conffile), its maintainer scripts.
daemon_files() {
  local pkg=$1 config=$2 root=$stage_root/$1 script
  install -D -m 0644 "packaging/systemd/$pkg.service" "$root/lib/systemd/system/$pkg.service"
  install -D -m 0644 "packaging/config/$config" "$root/etc/palisade/$config"
  echo "/etc/palisade/$config" >"$root/DEBIAN/conffiles"
  for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$pkg/$script" "$root/DEBIAN/$script"
  done
}

# control PKG BIN SECTION "SUMMARY" "EXTRA FIELDS" <<< LONG DESCRIPTION
control() {
  local pkg=$1 bin=$2 section=$3 summary=$4 extra=$5 root=$stage_root/$1 size
  # Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up, one per other entry.
  size=$(find "$root" -path "$root/DEBIAN" -prune -o -printf '%y %s\n' |
    awk '$1 == "f" { k += int(($2 + 1023) / 1024); next } { k += 1 } END { print k }')
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $size"
    echo "Depends: $(depends_of "$root/usr/bin/$bin")"
    [ -z "$extra" ] || printf '%s\n' "$extra"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Description: $summary"
    sed 's/^$/./; s/^/ /'
  } >"$root/DEBIAN/control"
}

build() {
  local pkg=$1 root=$stage_root/$1 deb
  deb=$out/${pkg}_${version}_${arch}.deb
  rm -f "$out/${pkg}_"*"_${arch}.deb"
  find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
  dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
  made+=("$deb")
}

echo ">> staging the packages (version $version, $arch)"
mkdir -p "$out"
made=()

stage palisade-controlplane palisade-controlplane
daemon_files palisade-controlplane controlplane.toml
install -D -m 0644 packaging/sysusers/palisade.conf "$stage_root/palisade-controlplane/usr/lib/sysusers.d/palisade.conf"
control palisade-controlplane palisade-controlplane admin \
  "Palisade control plane: policy store, rollouts, audit" \
  "Suggests: palisadectl" <<'EOF'
Palisade is declarative policy for Linux fleets, enforced in the kernel with eBPF.
The control plane validates policies, stores every revision, rolls them out to the
node daemons over mutual TLS (all at once or in canary waves with health gates),
and keeps and fans out their audit events.

The service runs as the system user palisade and is not started on installation:
it needs a PKI first (palisadectl pki init).
EOF
build palisade-controlplane

stage palisade-noded palisade-noded
daemon_files palisade-noded noded.toml
control palisade-noded palisade-noded admin \
  "Palisade node daemon: enforces policies with eBPF" \
  "Recommends: iproute2"$'\n'"Suggests: palisadectl" <<'EOF'
Palisade is declarative policy for Linux fleets, enforced in the kernel with eBPF.
The node daemon keeps a session with the control plane and enforces the policies
that select its node: network rules in XDP and TC, file and exec rules with BPF-LSM,
seccomp profiles, scheduler classes. Its programs stay pinned and enforcing when it
stops; it reports what it enforces and every audit event.

The service is not started on installation: it needs a node name, the control
plane's address and a node certificate first. iproute2 runs its feature probes.
EOF
build palisade-noded

stage palisadectl palisadectl
control palisadectl palisadectl admin \
  "Palisade command line: policies, rollouts, nodes, audit, PKI" "" <<'EOF'
Palisade is declarative policy for Linux fleets, enforced in the kernel with eBPF.
palisadectl validates, tests and explains policies locally, applies them through
the control plane and follows their rollouts, shows the nodes and what they
enforce, tails the audit trail, and manages the development PKI.
EOF
build palisadectl

echo ">> packages:"
printf '%s\n' "${made[@]}"
