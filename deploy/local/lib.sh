# Shared by deploy/local/stack, deploy/local/run and tests/run. Source it; it defines functions
# and sets nothing else but ACMEVAULT_ROOT.
# shellcheck shell=bash

ACMEVAULT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Debian packages the build, the stack and the tests need. Keep in step with README.md.
ACMEVAULT_PACKAGES=(
  bazel-bootstrap bazel-rules-java bazel-platforms
  g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libpqxx-dev libpq-dev libcurl4-openssl-dev nlohmann-json3-dev libidn2-dev
  prometheus-cpp-dev libcivetweb-dev libldns-dev
  bind9 bind9-utils bind9-dnsutils
  libgtest-dev libgmock-dev libssl-dev android-libboringssl-dev
  postgresql-15 postgresql-client-15 pebble
  openssl ca-certificates curl python3 iproute2 procps
  python3-grpcio python3-protobuf
  clang-14 libclang-rt-14-dev llvm-14
  python3-kubernetes python3-yaml mmdebstrap umoci podman runc softhsm2 libp11-kit-dev
)

av_log() { printf '[acmevault] %s\n' "$*" >&2; }
av_die() { printf '[acmevault] error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
av_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs whichever of ACMEVAULT_PACKAGES (plus any arguments) are missing. Idempotent, and
# quiet when nothing is missing.
av_install_packages() {
  local missing=() p
  for p in "${ACMEVAULT_PACKAGES[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  av_log "installing Debian packages: ${missing[*]}"
  av_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null ||
    av_die "apt-get update failed"
  av_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null || av_die "apt-get install ${missing[*]} failed"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
av_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sets variable $1 to the value of variable $2 if that is set, else to a loopback TCP port that
# nobody listens on and that this shell has not handed out yet (so call it directly, not in
# $(...)). Ports come from below the kernel's ephemeral range (ip_local_port_range, 32768 and up
# by default), which every port-0 listener and outgoing connection draws from: a port reserved
# now for a server started later must not be handed to one of those in between.
AV_PORTS_GIVEN=" "
av_port() {
  local out=$1 preset=${2:-} p tries=0
  if [ -n "$preset" ] && [ -n "${!preset:-}" ]; then
    printf -v "$out" '%s' "${!preset}"
    return 0
  fi
  local low high
  read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  ((low > 12000)) || low=32768
  while ((tries++ < 200)); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    [[ $AV_PORTS_GIVEN == *" $p "* ]] && continue
    if ! av_port_busy "$p"; then
      AV_PORTS_GIVEN+="$p "
      printf -v "$out" '%s' "$p"
      return 0
    fi
  done
  av_die "no free loopback port found"
}

# Waits up to $1 seconds for the command in "${@:2}" to succeed.
av_wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.2
  done
}

# The Bazel command line every script uses; $ACMEVAULT_BAZEL_OUTPUT_BASE, when set, names an
# output base of its own (a test that must not share the developer's Bazel server).
av_bazel() {
  bazel ${ACMEVAULT_BAZEL_OUTPUT_BASE:+"--output_base=$ACMEVAULT_BAZEL_OUTPUT_BASE"} "$@"
}

# Prints the pid of the Bazel server of this workspace (as av_bazel reaches it) when one runs.
av_bazel_server_pid() {
  local base=${ACMEVAULT_BAZEL_OUTPUT_BASE:-$HOME/.cache/bazel/_bazel_$(id -un)/$(printf '%s' "$ACMEVAULT_ROOT" | md5sum | cut -d' ' -f1)}
  local pid
  pid=$(cat "$base/server/server.pid.txt" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && echo "$pid"
}
