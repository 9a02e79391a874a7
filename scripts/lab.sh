#!/usr/bin/env bash
# The docker-compose lab: two control-plane replicas on a 3-member etcd cluster, three nodes
# (web-1, web-2: role=web; db-1: role=db) each enforcing on its own eth0, a client, an
# attacker, Prometheus and a tools container (docker-compose.yml). Needs root.
#
#   bash scripts/lab.sh up         install Docker from Debian's packages if missing, start its
#                                  daemon if it is not running, build the Palisade packages
#                                  and the images (offline), make the lab PKI, start the lab,
#                                  wait until every node is connected
#   bash scripts/lab.sh scenario   the guided scenario, step by step, every step asserted
#   bash scripts/lab.sh restart    a fresh lab from the images already built (new PKI, empty stores)
#   bash scripts/lab.sh down       remove the containers, network, volumes and images it made
#   bash scripts/lab.sh test       up + verify-packages + scenario + down (down even when a
#                                  step fails): the test suite's lab tier
#   bash scripts/lab.sh verify-packages   the .deb packages installed, checked, purged in a
#                                  clean root (a container of the base image)
#   bash scripts/lab.sh ctl ARGS   palisadectl from the host against the lab
#
# Environment: PALISADE_LAB_PROFILE=release|debug (the packages' build profile, default
# release), PALISADE_LAB_DEBS=DIR (use the packages in DIR instead of building),
# PALISADE_CACHE (where the base image's root file system is cached, default .cache).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/target/lab
PROJECT=palisade-lab
NODES=(web-1 web-2 db-1)
CP_URL=https://127.0.0.1:17443,https://127.0.0.1:17444
PROM=http://127.0.0.1:19090
CTL_BIN=$STATE/host/usr/bin/palisadectl
export PATH="$HOME/.cargo/bin:$PATH"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
log() { echo ">> $*"; }
die() { echo "!! $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Exit status 77: the lab cannot run on this machine (the test suite counts it as skipped,
# and fails when the lab tier is required).
cannot_run() { echo "!! the lab cannot run here: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || cannot_run "it needs root (Docker, BPF in the node containers)"

# --- Docker ---------------------------------------------------------------------------

ensure_docker() {
  local need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)   # the offline base image
  command -v curl >/dev/null || need+=(curl)                 # Prometheus' HTTP API
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
    need+=(docker-compose)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    log "installing from Debian's packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || cannot_run "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || cannot_run "cannot install ${need[*]}"
  fi
  if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
      log "starting the Docker daemon (systemctl start docker)"
      systemctl start docker
    else
      log "starting the Docker daemon (no systemd here; log in /var/log/palisade-lab-dockerd.log)"
      nohup dockerd >/var/log/palisade-lab-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || cannot_run "the Docker daemon did not start (see /var/log/palisade-lab-dockerd.log)"
  fi
}

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"
  else
    docker-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" "$@"
  fi
}

ctl() { "$CTL_BIN" --controlplane "$CP_URL" --pki "$STATE/pki/host" "$@"; }

# --- up -------------------------------------------------------------------------------

make_pki() {
  # One directory per role, each with only what that role needs (ca.key stays on the host).
  local all=$STATE/pki/host
  rm -rf "$STATE/pki"
  local args=()
  for n in "${NODES[@]}"; do args+=(--node "$n"); done
  "$CTL_BIN" pki init "$all" "${args[@]}" >/dev/null
  mkdir -p "$STATE/pki/controlplane" "$STATE/pki/operator"
  cp "$all/ca.pem" "$all/controlplane.pem" "$all/controlplane.key" "$STATE/pki/controlplane/"
  cp "$all/ca.pem" "$all/operator.pem" "$all/operator.key" "$STATE/pki/operator/"
  for n in "${NODES[@]}"; do
    mkdir -p "$STATE/pki/$n/nodes"
    cp "$all/ca.pem" "$STATE/pki/$n/"
    cp "$all/nodes/$n.pem" "$all/nodes/$n.key" "$STATE/pki/$n/nodes/"
  done
}

wait_connected() {
  local want=$1 timeout=$2 start; start=$(now)
  local last=""
  while :; do
    local n
    n=$(ctl nodes -o json 2>/dev/null | python3 -c 'import json,sys
print(sum(1 for l in sys.stdin if l.strip() and json.loads(l).get("connected")))' 2>/dev/null || echo 0)
    [ "$n" != "$last" ] && { log "nodes connected: $n/$want ($(since "$start") s)"; last=$n; }
    [ "$n" -ge "$want" ] && return 0
    awk -v s="$(since "$start")" -v t="$timeout" 'BEGIN { exit !(s > t) }' && return 1
    sleep 0.5
  done
}

# A fresh lab from the built image: new PKI, empty stores, every node connected.
start_lab() {
  bold "lab PKI in $STATE/pki (one directory per role)"
  make_pki
  bold "starting the lab ($PROJECT)"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  local t_start; t_start=$(now)
  compose up -d
  wait_connected ${#NODES[@]} 120 || { compose ps; compose logs --tail 30; die "not every node connected within 120 s"; }
  T_START=$(since "$t_start")
  ctl nodes
  ctl controlplanes
}

up() {
  local t0; t0=$(now)
  scripts/install-deps.sh   # the build's own needs (clang, binutils, ...); quick when present
  ensure_docker
  mkdir -p "$STATE/context"
  rm -rf "$STATE/context/debs"
  if [ -n "${PALISADE_LAB_DEBS:-}" ]; then
    bold "packages: the ones in $PALISADE_LAB_DEBS"
    mkdir -p "$STATE/context/debs"
    cp "$PALISADE_LAB_DEBS"/*.deb "$STATE/context/debs/"
  else
    bold "packages: scripts/package.sh (profile ${PALISADE_LAB_PROFILE:-release})"
    scripts/package.sh --profile "${PALISADE_LAB_PROFILE:-release}" --out "$STATE/context/debs"
  fi
  # palisadectl on the host: the packaged binary itself, unpacked (nothing installed on the host).
  rm -rf "$STATE/host"
  dpkg-deb -x "$STATE"/context/debs/palisadectl_*.deb "$STATE/host"

  bold "base image (lab/base-image.sh)"
  local base; base=$(lab/base-image.sh)
  bold "Palisade image from $base + the packages"
  cp lab/Dockerfile "$STATE/context/Dockerfile"
  DOCKER_BUILDKIT=0 docker build --label palisade.lab=1 --build-arg "BASE=$base" \
    -t palisade-lab:latest "$STATE/context" 2>&1 | grep --line-buffered -v '^DEPRECATED\|^ *Install the buildx\|^ *BuildKit is currently\|^ *environment-variable\|^ *https://docs.docker.com/go/buildx' || true
  docker image inspect palisade-lab:latest >/dev/null 2>&1 || die "the image did not build"
  local t_built; t_built=$(since "$t0")

  start_lab
  log "up in $(since "$t0") s (packages and images $t_built s, start to all connected $T_START s)"
  cat <<EOF

The lab is up. From the host:
  bash scripts/lab.sh ctl nodes                     # palisadectl against $CP_URL
  $CTL_BIN --controlplane $CP_URL --pki $STATE/pki/host nodes
From the tools container:  docker exec pal-tools palisadectl nodes
Prometheus: $PROM (alerts: $PROM/alerts), control plane metrics: http://127.0.0.1:19464/metrics
Next: bash scripts/lab.sh scenario;  bash scripts/lab.sh down
EOF
}

# The packages installed, checked and purged in a clean root: a throwaway container of the
# base image (scripts/verify-packages.sh: units pass `systemd-analyze verify`, configs parse,
# man pages and completions are there, a purge leaves nothing).
verify_packages() {
  ls "$STATE"/context/debs/*.deb >/dev/null 2>&1 || die "no packages in $STATE/context/debs: bash scripts/lab.sh up first"
  local base; base=$(lab/base-image.sh)
  bold "the packages in a clean root ($base): scripts/verify-packages.sh"
  docker run --rm --label palisade.lab=1 -v "$STATE/context/debs:/debs:ro" -v "$ROOT/scripts:/scripts:ro" \
    "$base" bash /scripts/verify-packages.sh /debs
}

# --- down -----------------------------------------------------------------------------

down() {
  docker info >/dev/null 2>&1 || { log "Docker is not running: nothing to remove"; return 0; }
  bold "removing the lab"
  # (compose tries to remove the one shared image once per service: only the first succeeds)
  compose down -v --remove-orphans --rmi all 2>&1 | grep -v -e '^$' -e 'not found' -e '^Removing image' || true
  local imgs
  imgs=$(docker images --filter label=palisade.lab=1 -q; docker images 'palisade-lab-base' -q)
  # shellcheck disable=SC2086
  [ -n "$imgs" ] && docker rmi -f $(echo $imgs | tr ' ' '\n' | sort -u) >/dev/null 2>&1 || true
  docker image prune -f --filter label=palisade.lab=1 >/dev/null 2>&1 || true
  rm -rf "$STATE/pki" "$STATE/host"
  local left
  left=$(docker ps -a --filter "label=com.docker.compose.project=$PROJECT" -q; docker network ls --filter name=palisade-lab -q)
  [ -z "$left" ] || die "left behind: $left"
  log "removed (the base image's root file system stays cached in ${PALISADE_CACHE:-.cache}/lab)"
}

# --- scenario -------------------------------------------------------------------------

# A probe from a container: traffic.py's JSON line; prints "answered".
probe() {
  local from=$1; shift
  docker exec "pal-$from" python3 /lab/traffic.py "$@" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["answered"])'
}
expect() { # what got want
  if [ "$2" = "$3" ]; then echo "   ok: $1: $2"; else die "$1: got $2, want $3"; fi
}
expect_ge() {
  if [ "$2" -ge "$3" ]; then echo "   ok: $1: $2 (>= $3)"; else die "$1: got $2, want >= $3"; fi
}
# jq-like: node JSON from `nodes -o json`, a Python expression over `nodes`.
nodes_q() { ctl nodes -o json | python3 -c "import json,sys; nodes={n['name']: n for n in map(json.loads, filter(str.strip, sys.stdin))}; print($1)"; }
realized() { nodes_q "','.join(f\"{p['policy']}@{p['revision']}\" for p in nodes['$1'].get('realized', [])) or '-'"; }
rule_packets() { # node rule
  nodes_q "sum(c.get('packets', 0) for c in nodes['$1'].get('counters', []) if c.get('rule') == '$2')"
}
wait_for() { # description timeout command...
  local what=$1 timeout=$2; shift 2
  local start; start=$(now)
  until "$@" >/dev/null 2>&1; do
    awk -v s="$(since "$start")" -v t="$timeout" 'BEGIN { exit !(s > t) }' && die "timed out after ${timeout}s waiting for: $what"
    sleep 0.5
  done
  echo "   ok: $what ($(since "$start") s)"
}
prom_alert() { # alertname node state(firing|none)
  curl -fsS "$PROM/api/v1/alerts" | python3 -c "
import json,sys
alerts = json.load(sys.stdin)['data']['alerts']
hit = [a for a in alerts if a['labels'].get('alertname') == '$1' and a['state'] == 'firing'
       and ('$2' == '' or a['labels'].get('node') == '$2' or a['labels'].get('policy') == '$2')]
sys.exit(0 if bool(hit) == ('$3' == 'firing') else 1)"
}
# Python expression over r, the `controlplanes -o json` answer.
cps_q() { ctl controlplanes -o json 2>/dev/null | python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }
drives() { [ "$(cps_q "[x['url'] for x in r['replicas'] if x['driver']]")" = "['$1']" ]; }
replicas_are() { [ "$(cps_q "len(r['replicas'])")" = "$1" ]; }
rollout_state() { ctl rollout status "$1" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
is_connected() { [ "$(nodes_q "nodes['$1']['connected']")" = True ]; }
realized_is() { [ "$(realized "$1")" = "$2" ]; }

scenario() {
  local t0; t0=$(now)
  docker inspect pal-controlplane >/dev/null 2>&1 || die "the lab is not up: bash scripts/lab.sh up"
  [ -z "$(ctl list 2>/dev/null | grep -v '^no policies' || true)" ] \
    || die "the scenario starts from an empty lab, and this one has policies: bash scripts/lab.sh restart (a fresh lab from the same images)"

  bold "1. every node connected and in sync (palisadectl nodes)"
  wait_for "3 nodes connected" 60 wait_connected 3 60
  ctl nodes
  log "palisadectl in the tools container (operator certificate, https://controlplane:7443)"
  expect "nodes listed by docker exec pal-tools palisadectl nodes" \
    "$(docker exec pal-tools palisadectl nodes -o json | grep -c '"connected":true')" 3
  expect "examples/ validated in the tools container" \
    "$(docker exec pal-tools palisadectl validate /examples/policies/web-tier.rhai >/dev/null && echo ok)" ok
  log "before any policy, the attacker (from 203.0.113.66) reaches every node"
  for n in web-1 db-1; do expect "UDP echo from 203.0.113.66 to $n" "$(probe attacker udp $n 7 10 --src 203.0.113.66 --timeout 3)" 10; done

  bold "2. apply examples/policies/web-tier.rhai --rollout canary -w (canary web-1, then web-2; db-1 is not selected)"
  ctl apply examples/policies/web-tier.rhai --rollout canary --canary 1 --wave-size 100% --pause 5s -w
  local rev1; rev1=$(nodes_q "nodes['web-1']['realized'][0]['revision']")
  ctl rollout status web-tier --all-nodes
  local waves; waves=$(ctl rollout status web-tier -o json | python3 -c 'import json,sys
by = {}
for n in json.load(sys.stdin)["nodes"]: by.setdefault(n["wave"], []).append(n["name"])
print(" | ".join(",".join(sorted(by[w])) for w in sorted(by)))')
  expect "rollout waves" "$waves" "web-1 | web-2"
  expect "web-1 realizes" "$(realized web-1)" "web-tier@$rev1"
  expect "web-2 realizes" "$(realized web-2)" "web-tier@$rev1"
  expect "db-1 realizes" "$(realized db-1)" "-"
  log "the attacker's traffic: dropped in XDP by the web nodes, answered by db-1"
  for n in web-1 web-2; do
    expect "UDP echo from 203.0.113.66 (bad-nets) to $n" "$(probe attacker udp $n 7 20 --src 203.0.113.66)" 0
    expect "TCP :7 from the attacker's own address (default deny) to $n" "$(probe attacker tcp $n 7 10)" 0
  done
  expect "UDP echo from 203.0.113.66 to db-1" "$(probe attacker udp db-1 7 20 --src 203.0.113.66 --timeout 3)" 20
  expect "TCP :7 from the attacker to db-1" "$(probe attacker tcp db-1 7 10 --timeout 3)" 10
  log "the client's allowed traffic (HTTP) passes"
  for n in web-1 web-2 db-1; do expect "HTTP GETs from the client to $n" "$(probe client http $n 20 --timeout 3)" 20; done
  log "the per-rule counters the nodes report (from the XDP program's per-CPU counters)"
  wait_for "web-1 reports its bad-nets counter" 30 bash -c "[ \$($0 _rule_packets web-1 bad-nets) -ge 20 ]"
  wait_for "web-2 reports its bad-nets counter" 30 bash -c "[ \$($0 _rule_packets web-2 bad-nets) -ge 20 ]"
  expect "web-1 bad-nets packets" "$(rule_packets web-1 bad-nets)" 20
  expect "web-2 bad-nets packets" "$(rule_packets web-2 bad-nets)" 20

  bold "3. palisadectl audit tail: the drops with node, policy, rule and revision"
  ctl audit tail --node web-1 --rule bad-nets --last 5
  local q='import json,sys
ev = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(1 for e in ev if e.get("node") == sys.argv[1] and e.get("policy") == "web-tier" and e.get("rule") == "bad-nets"
          and e.get("revision") == int(sys.argv[2]) and e.get("src", "").startswith("203.0.113.66")))'
  for n in web-1 web-2; do
    expect "audit events of $n, web-tier@$rev1 rule bad-nets from 203.0.113.66" \
      "$(ctl audit tail --node $n --rule bad-nets --last 1000 -o json | python3 -c "$q" $n "$rev1")" 20
  done
  expect "audit events of db-1" "$(ctl audit tail --node db-1 --last 1000 -o json | grep -c . || true)" 0

  bold "4. a broken revision (lab/policies/web-tier-typo.rhai denies the lab network) is rolled back after the canary wave"
  grep -n '10.89.0.0/24' lab/policies/web-tier-typo.rhai
  log "the client sends 10 HTTP GETs/s to each web node meanwhile"
  docker exec pal-client python3 /lab/traffic.py flood web-1 22 10 --timeout 2 >"$STATE/flood-web-1.json" &
  local f1=$!
  docker exec pal-client python3 /lab/traffic.py flood web-2 22 10 --timeout 2 >"$STATE/flood-web-2.json" &
  local f2=$!
  sleep 1
  local st=0
  ctl apply lab/policies/web-tier-typo.rhai --rollout canary --canary 1 --wave-size 100% --pause 10s --max-deny-rate 2 -w || st=$?
  expect "apply -w exit status (1: rolled back)" "$st" 1
  ctl rollout status web-tier --all-nodes
  expect "rollout state" "$(rollout_state web-tier)" rolled-back
  wait_for "Prometheus: PalisadeRolloutHalted firing for web-tier" 20 prom_alert PalisadeRolloutHalted web-tier firing
  wait $f1 $f2
  local s1 a1 s2 a2
  read -r s1 a1 < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["answered"])' "$STATE/flood-web-1.json")
  read -r s2 a2 < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["answered"])' "$STATE/flood-web-2.json")
  log "client GETs to web-1 (the canary): $a1 of $s1 answered; to web-2: $a2 of $s2"
  expect "client GETs to web-2 answered (web-2 never saw the broken revision)" "$a2" "$s2"
  local rev_cur; rev_cur=$(nodes_q "nodes['web-1']['desired'][0]['revision']")
  wait_for "web-1 back on the previous rules (web-tier@$rev_cur)" 30 realized_is web-1 "web-tier@$rev_cur"
  expect "web-2 realizes" "$(realized web-2)" "web-tier@$rev_cur"
  local rev_typo=$((rev1 + 1))
  enforced_revs() { docker logs "$1" 2>&1 | grep 'desired state enforced' | grep -o 'web-tier@[0-9]*' | sort -u | tr '\n' ' '; }
  log "revisions web-1 enforced: $(enforced_revs pal-web-1)"
  log "revisions web-2 enforced: $(enforced_revs pal-web-2)"
  enforced_revs pal-web-1 | grep -q "web-tier@$rev_typo " || die "web-1 (the canary) never enforced the broken web-tier@$rev_typo"
  if enforced_revs pal-web-2 | grep -q "web-tier@$rev_typo "; then die "web-2 enforced the broken web-tier@$rev_typo"; fi
  echo "   ok: the broken web-tier@$rev_typo reached the canary web-1 only"
  # What web-1 dropped while it enforced it, for the record (not asserted: the rollback can
  # be quick enough to drop only a packet or two, and a GET whose first SYN was dropped is
  # answered by a retransmission after it; what the canary enforced is asserted above).
  local dropped_q='import json,sys
ev = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(1 for e in ev if e.get("revision") == int(sys.argv[1]) and e.get("src", "").startswith("10.89.0.")))'
  log "web-1's audit events for lab-network packets under web-tier@$rev_typo: $(ctl audit tail --node web-1 --last 10000 -o json | python3 -c "$dropped_q" "$rev_typo")"
  expect "HTTP GETs from the client to web-1 after the rollback" "$(probe client http web-1 10 --timeout 3)" 10

  bold "5. docker kill a node mid-rollout; it restarts on its cached revision, then converges"
  log "apply lab/policies/web-tier-scrape.rhai (lets Prometheus scrape the node daemons) as a canary with a 20 s watch"
  ctl apply lab/policies/web-tier-scrape.rhai --rollout canary --canary 1 --wave-size 100% --pause 20s
  local rev3; rev3=$(ctl get web-tier -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  wait_for "the canary web-1 realizes web-tier@$rev3" 30 realized_is web-1 "web-tier@$rev3"
  docker kill pal-web-2 >/dev/null
  log "killed pal-web-2 during the canary's watch"
  ctl nodes
  wait_for "Prometheus: PalisadeNodeDrifting firing for web-2" 40 prom_alert PalisadeNodeDrifting web-2 firing
  local restart_at; restart_at=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  docker start pal-web-2 >/dev/null
  wait_for "web-2 reconnected" 60 is_connected web-2
  local order
  order=$(docker logs --since "$restart_at" pal-web-2 2>&1 | grep -o 're-applied the cached desired state\|session with the control plane established' | uniq | tr '\n' '|')
  expect "web-2's log after the restart" "$order" "re-applied the cached desired state|session with the control plane established|"
  ctl nodes
  expect "UDP echo from 203.0.113.66 to the restarted web-2" "$(probe attacker udp web-2 7 10 --src 203.0.113.66)" 0
  wait_for "rollout of web-tier@$rev3 completed" 90 bash -c "[ \"\$($0 _rollout_state web-tier)\" = completed ]"
  ctl rollout status web-tier --all-nodes
  wait_for "web-2 realizes web-tier@$rev3" 30 realized_is web-2 "web-tier@$rev3"
  ctl nodes

  bold "6. Prometheus: the drift alert fired and cleared; the node daemons are scraped"
  wait_for "Prometheus: PalisadeNodeDrifting cleared for web-2" 40 prom_alert PalisadeNodeDrifting web-2 none
  wait_for "Prometheus: PalisadeRolloutHalted cleared (the latest rollout completed)" 20 prom_alert PalisadeRolloutHalted web-tier none
  wait_for "Prometheus scrapes web-1's daemon (allowed by metrics-scrape)" 30 bash -c "curl -fsS '$PROM/api/v1/query?query=up%7Binstance%3D%22web-1:9465%22%7D' | grep -q '\"1\"\]'"
  curl -fsS "$PROM/api/v1/query?query=ALERTS" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print("   alerts now:", [(a["metric"]["alertname"], a["metric"].get("node", a["metric"].get("policy", "")), a["metric"]["alertstate"]) for a in r] or "none")'
  bold "7. two replicas on etcd: a replica's host dies, then the other is cut off from etcd"
  ctl controlplanes
  wait_for "2 replicas registered" 30 replicas_are 2
  expect "replicas driving rollouts" "$(cps_q "sum(1 for x in r['replicas'] if x['driver'])")" 1
  expect "the store answers" "$(cps_q "r['store'] + ' ' + (r['store_error'] or 'ok')")" "etcd ok"
  log "the attacker sends UDP datagrams to web-1 from 203.0.113.66 all through this step (one per 0.2 s)"
  docker exec pal-attacker rm -f /tmp/ha-stop
  docker exec pal-attacker python3 /lab/traffic.py udp web-1 7 100000 --src 203.0.113.66 --timeout 0.2 --until /tmp/ha-stop >"$STATE/ha-attacker.json" &
  local fa=$!
  local killed_at; killed_at=$(now)
  docker kill pal-controlplane >/dev/null
  log "killed pal-controlplane (its host, as far as the lab goes)"
  wait_for "controlplane-2 drives rollouts" 30 drives https://controlplane-2:7443
  local takeover; takeover=$(since "$killed_at")
  wait_for "1 replica registered (the killed one's lease ended)" 30 replicas_are 1
  wait_for "every node served by controlplane-2" 60 bash -c "[ \"\$($0 _cps_q \"[x['nodes'] for x in r['replicas']]\")\" = '[3]' ]"
  local reconnected; reconnected=$(since "$killed_at")
  log "driver taken over ${takeover} s after the kill; every node on controlplane-2 ${reconnected} s after"
  ctl apply examples/policies/web-tier.rhai -w
  local rev4; rev4=$(ctl get web-tier -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  for n in web-1 web-2; do wait_for "$n realizes web-tier@$rev4 (applied through controlplane-2)" 30 realized_is $n "web-tier@$rev4"; done

  docker network disconnect palisade-lab-store pal-controlplane-2
  log "disconnected pal-controlplane-2 from the store network (etcd unreachable; nodes still reach it)"
  local t_fail; t_fail=$(now)
  local out st=0
  out=$(ctl apply lab/policies/web-tier-scrape.rhai 2>&1) || st=$?
  local took; took=$(since "$t_fail")
  echo "   $out"
  [ "$st" != 0 ] || die "an apply with etcd unreachable succeeded"
  echo "$out" | grep -q "unavailable.*etcd" || die "the error does not say that etcd is unavailable"
  awk -v t="$took" 'BEGIN { exit !(t < 15) }' || die "the apply took $took s to fail"
  echo "   ok: apply refused in $took s, saying what is down"
  wait_for "Prometheus: PalisadeStoreUnavailable firing" 30 prom_alert PalisadeStoreUnavailable "" firing
  expect "nodes still connected to controlplane-2" "$(nodes_q "sum(1 for n in nodes.values() if n['connected'])")" 3
  docker network connect --ip 10.89.1.20 palisade-lab-store pal-controlplane-2
  log "reconnected pal-controlplane-2 to the store network"
  wait_for "an apply through controlplane-2 succeeds again (no restart)" 60 ctl apply lab/policies/web-tier-scrape.rhai
  local rev5; rev5=$(ctl get web-tier -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  expect "the refused apply made no revision" "$rev5" "$((rev4 + 1))"
  for n in web-1 web-2; do wait_for "$n realizes web-tier@$rev5" 60 realized_is $n "web-tier@$rev5"; done
  docker exec pal-attacker touch /tmp/ha-stop
  wait $fa
  local sa aa
  read -r sa aa < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["answered"])' "$STATE/ha-attacker.json")
  expect "attacker datagrams to web-1 answered during all of step 7 ($sa sent)" "$aa" 0
  docker start pal-controlplane >/dev/null
  wait_for "2 replicas registered again" 60 replicas_are 2
  ctl controlplanes
  log "scenario passed in $(since "$t0") s"
}

case "${1:-}" in
  up) up ;;
  down) ensure_docker; down ;;
  scenario) scenario ;;
  restart) ensure_docker; start_lab ;;
  test)
    # What the host's own BPF filesystem holds before: the lab must leave it as it was (the
    # node containers mount their own, which go away with them).
    bpffs_before=$(ls -A /sys/fs/bpf 2>/dev/null | sort)
    finish() {
      local st=$?
      down || st=1
      if [ "$(ls -A /sys/fs/bpf 2>/dev/null | sort)" != "$bpffs_before" ]; then
        echo "!! the lab left something in /sys/fs/bpf" >&2; st=1
      fi
      exit $st
    }
    trap finish EXIT
    up
    verify_packages
    scenario
    ;;
  verify-packages) ensure_docker; verify_packages ;;
  ctl) shift; ctl "$@" ;;
  # internal helpers the scenario runs in subshells
  _rule_packets) rule_packets "$2" "$3" ;;
  _rollout_state) rollout_state "$2" ;;
  _cps_q) cps_q "$2" ;;
  *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
