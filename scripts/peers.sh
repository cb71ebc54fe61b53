#!/usr/bin/env bash
# Peer brokers for the benchmark harness: RabbitMQ, NATS (JetStream) and Redis, installed from
# Debian packages and run as plain background daemons on 127.0.0.1, each with its own data
# directory under $SLUICE_PEERS_DIR. No systemd: the packages' own services are kept from
# starting during install, and `start` runs the daemons directly with pid files.
#
#   scripts/peers.sh install [NAME]  apt-get install what is missing (one apt-get update,
#                                    quiet); with NAME, that peer only, and start it too
#   scripts/peers.sh start [NAME]    start every installed peer (or NAME), wait until it answers
#   scripts/peers.sh stop [NAME]     stop them and remove $SLUICE_PEERS_DIR (or NAME's folder)
#   scripts/peers.sh status          one line per peer: installed, running, port
#
# NAME is rabbitmq, nats or redis. `npm run peers -- ARGS` runs this script with ARGS:
# `npm run peers -- install rabbitmq` is the one command that makes the benchmark's
# rabbitmq driver run.
#
# Environment (defaults in brackets):
#   SLUICE_PEERS_DIR [/tmp/sluice-peers]   data, logs and pid files
#   SLUICE_RABBITMQ_PORT [5672]  SLUICE_NATS_PORT [4222]  SLUICE_REDIS_PORT [6379]
#   SLUICE_RABBITMQ_TLS_PORT [5671]  RabbitMQ's AMQPS listener (see "TLS" below)
#   SLUICE_RABBITMQ_NODE [sluice-peer@localhost]  the Erlang node name
#   SLUICE_PEERS_START_WAIT_S [60]  bound on RabbitMQ's start (it boots an Erlang VM: ~5-8 s here)
#   SLUICE_PEERS_PORT_WAIT_S [10]   bound on NATS's and Redis's (well under a second here)
#
# Durability as started here (the drivers print the same in their results):
#   - RabbitMQ: default settings; persistent messages in durable queues are confirmed once
#     written to disk (RabbitMQ batches the fsync).
#   - NATS JetStream: file storage; the server fsyncs on its own schedule (sync_interval,
#     2 minutes by default), so an acknowledged message may sit in the page cache until then.
#   - Redis: AOF with `appendfsync everysec`: a write is acknowledged from memory and the AOF
#     is fsynced once a second, so a crash can lose about the last second. RDB snapshots off.
#
# TLS: when openssl is installed (scripts/install_openssl.sh), `start rabbitmq` also makes a
# throwaway CA and a server certificate for localhost / 127.0.0.1 in
# $SLUICE_PEERS_DIR/rabbitmq/tls/ (ca.pem, server.pem, server.key) and opens an AMQPS
# listener (TLS 1.2 and 1.3, no client certificates) on SLUICE_RABBITMQ_TLS_PORT, beside the
# plaintext one: the rabbitmq driver's `rabbitmq.tls=true` connects there, trusting ca.pem.
# Without openssl the TLS listener is left out, saying so.
set -euo pipefail

PEERS_DIR=${SLUICE_PEERS_DIR:-/tmp/sluice-peers}
RABBITMQ_PORT=${SLUICE_RABBITMQ_PORT:-5672}
NATS_PORT=${SLUICE_NATS_PORT:-4222}
REDIS_PORT=${SLUICE_REDIS_PORT:-6379}
WAIT_S=${SLUICE_PEERS_START_WAIT_S:-60}
PORT_WAIT_S=${SLUICE_PEERS_PORT_WAIT_S:-10}
RABBITMQ_TLS_PORT=${SLUICE_RABBITMQ_TLS_PORT:-5671}
RABBITMQ_NODE=${SLUICE_RABBITMQ_NODE:-sluice-peer@localhost}
RABBITMQ_BIN=/usr/lib/rabbitmq/bin

PACKAGES=(rabbitmq-server nats-server redis-server)
PEERS=(rabbitmq nats redis)
ALL_PEERS=("${PEERS[@]}")

log() { printf '%s\n' "$*"; }
die() {
  printf 'peers.sh: %s\n' "$*" >&2
  exit 1
}

package_of() {
  case $1 in
  rabbitmq) echo rabbitmq-server ;;
  nats) echo nats-server ;;
  redis) echo redis-server ;;
  esac
}

port_of() {
  case $1 in
  rabbitmq) echo "$RABBITMQ_PORT" ;;
  nats) echo "$NATS_PORT" ;;
  redis) echo "$REDIS_PORT" ;;
  esac
}

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# True when something accepts a TCP connection on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_alive() {
  local file=$1
  [[ -f $file ]] && kill -0 "$(cat "$file")" 2>/dev/null
}

# Polls until the port answers or $4 seconds pass (fails fast when the daemon died).
wait_port() {
  local name=$1 port=$2 pidfile=$3 bound_s=$4 deadline=$((SECONDS + $4))
  until port_open "$port"; do
    if ((SECONDS > deadline)); then die "$name did not open port $port within ${bound_s}s"; fi
    if [[ -f $pidfile ]] && ! pid_alive "$pidfile"; then
      die "$name exited during start; see $PEERS_DIR/$name/"
    fi
    sleep 0.1
  done
}

cmd_install() {
  local missing=() package
  for package in "${PACKAGES[@]}"; do
    is_installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    log "installed already: ${PACKAGES[*]}"
    return
  fi
  [[ $(id -u) == 0 ]] || die "install needs root (apt-get): sudo scripts/peers.sh install"
  # Keep the packages' own services from starting (this script runs its own instances on the
  # same ports). Docker images already ship such a policy; add one only for this install.
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    # shellcheck disable=SC2064 # expand now: the local is gone when the trap runs
    trap "rm -f '$policy'" EXIT
  fi
  log "installing: ${missing[*]}"
  # apt's own output goes to a log, shown only when something fails.
  local apt_log
  apt_log=$(mktemp)
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    die "apt-get failed installing ${missing[*]}"
  fi
  rm -f "$apt_log"
  log "installed: ${missing[*]}"
}

# A throwaway CA and a server certificate signed by it, in $1; false without openssl.
make_tls_certs() {
  local dir=$1
  command -v openssl >/dev/null 2>&1 || return 1
  mkdir -p "$dir"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 \
    -subj "/CN=sluice peers test CA" >/dev/null 2>&1 &&
    openssl req "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" \
      -subj "/CN=localhost" >/dev/null 2>&1 &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.cnf" &&
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -out "$dir/server.pem" -days 30 -extfile "$dir/san.cnf" >/dev/null 2>&1
}

# rabbitmq.conf with an AMQPS listener, when certificates could be made; prints its path.
rabbitmq_tls_config() {
  local dir=$1
  if ! make_tls_certs "$dir/tls"; then
    log "rabbitmq: openssl is missing, no TLS listener (bash scripts/install_openssl.sh)" >&2
    return 0
  fi
  cat >"$dir/rabbitmq.conf" <<CONF
listeners.ssl.1 = 127.0.0.1:$RABBITMQ_TLS_PORT
ssl_options.cacertfile = $dir/tls/ca.pem
ssl_options.certfile = $dir/tls/server.pem
ssl_options.keyfile = $dir/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CONF
  printf '%s\n' "$dir/rabbitmq.conf"
}

start_rabbitmq() {
  local dir=$PEERS_DIR/rabbitmq pidfile=$PEERS_DIR/rabbitmq/rabbitmq.pid config
  mkdir -p "$dir/mnesia" "$dir/log"
  printf '[].\n' >"$dir/enabled_plugins"
  config=$(rabbitmq_tls_config "$dir")
  # The wrappers in /usr/sbin switch to the `rabbitmq` user; the scripts they call run as
  # whoever starts them. HOME holds this instance's Erlang cookie, shared with rabbitmqctl.
  # epmd and the distribution port listen on loopback only, like AMQP.
  env HOME="$dir" \
    RABBITMQ_NODENAME="$RABBITMQ_NODE" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$RABBITMQ_PORT" \
    RABBITMQ_DIST_PORT=$((RABBITMQ_PORT + 20000)) \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$pidfile" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    ${config:+RABBITMQ_CONFIG_FILE="$config"} \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_CRASH_DUMP="$dir/log/erl_crash.dump" \
    setsid "$RABBITMQ_BIN/rabbitmq-server" >"$dir/log/stdout.log" 2>&1 </dev/null &
  # `wait` polls for the pid file, then for the broker to finish booting (await_startup
  # alone fails at once while the node is not yet reachable).
  rabbitmqctl_ wait "$pidfile" --timeout "$WAIT_S" >"$dir/log/wait.log" 2>&1 ||
    die "rabbitmq did not start within ${WAIT_S}s; see $dir/log/"
  wait_port rabbitmq "$RABBITMQ_PORT" "$pidfile" "$PORT_WAIT_S"
  if [[ -n $config ]]; then
    wait_port rabbitmq "$RABBITMQ_TLS_PORT" "$pidfile" "$PORT_WAIT_S"
    log "rabbitmq: TLS on 127.0.0.1:$RABBITMQ_TLS_PORT (CA: $dir/tls/ca.pem)"
  fi
}

rabbitmqctl_() {
  # An Erlang VM that dies writes erl_crash.dump into its working directory: keep it
  # beside the broker's logs, not in whoever's checkout ran this.
  env HOME="$PEERS_DIR/rabbitmq" ERL_EPMD_ADDRESS=127.0.0.1 \
    ERL_CRASH_DUMP="$PEERS_DIR/rabbitmq/log/rabbitmqctl_crash.dump" \
    "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODE" "$@"
}

start_nats() {
  local dir=$PEERS_DIR/nats
  mkdir -p "$dir/jetstream"
  setsid nats-server -js -sd "$dir/jetstream" -a 127.0.0.1 -p "$NATS_PORT" \
    -P "$dir/nats.pid" -l "$dir/nats.log" >/dev/null 2>&1 </dev/null &
  wait_port nats "$NATS_PORT" "$dir/nats.pid" "$PORT_WAIT_S"
}

start_redis() {
  local dir=$PEERS_DIR/redis
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
    --appendonly yes --appendfsync everysec --save "" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  wait_port redis "$REDIS_PORT" "$dir/redis.pid" "$PORT_WAIT_S"
}

cmd_start() {
  local peer port started=()
  mkdir -p "$PEERS_DIR"
  for peer in "${PEERS[@]}"; do
    port=$(port_of "$peer")
    if ! is_installed "$(package_of "$peer")"; then
      log "$peer: not installed (scripts/peers.sh install)"
    elif port_open "$port"; then
      log "$peer: port $port already answers; not starting another"
    else
      "start_$peer"
      started+=("$peer:$port")
    fi
  done
  ((${#started[@]} == 0)) || log "started on 127.0.0.1: ${started[*]} (data in $PEERS_DIR)"
}

# Sends TERM to the pid in $2 and waits (bounded) for it to exit, then KILL.
stop_pid() {
  local name=$1 pidfile=$2 pid deadline=$((SECONDS + 15))
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS > deadline)); then
      log "$name: did not exit on TERM; killing"
      kill -9 "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
}

cmd_stop() {
  local dir=$PEERS_DIR
  [[ -d $dir ]] || {
    log "nothing to stop ($dir does not exist)"
    return
  }
  if pid_alive "$dir/rabbitmq/rabbitmq.pid"; then
    rabbitmqctl_ stop "$dir/rabbitmq/rabbitmq.pid" >/dev/null 2>&1 ||
      stop_pid rabbitmq "$dir/rabbitmq/rabbitmq.pid"
    # epmd was started by this node's boot; it outlives the node unless told to stop.
    ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
  fi
  stop_pid nats "$dir/nats/nats.pid"
  stop_pid redis "$dir/redis/redis.pid"
  rm -rf "$dir"
  log "stopped; removed $dir"
}

cmd_status() {
  local peer port installed running pidfile
  for peer in "${PEERS[@]}"; do
    port=$(port_of "$peer")
    installed=no
    is_installed "$(package_of "$peer")" && installed=yes
    pidfile=$PEERS_DIR/$peer/$peer.pid
    if pid_alive "$pidfile" && port_open "$port"; then
      running="yes (pid $(cat "$pidfile"))"
    elif port_open "$port"; then
      running="port answers (not started by peers.sh)"
    else
      running=no
    fi
    printf '%-9s installed=%-3s running=%s port=%s\n' "$peer" "$installed" "$running" "$port"
  done
}

# Narrows PEERS and PACKAGES to the one peer named, if any.
select_peer() {
  (($# <= 1)) || die "one peer at a time: got '$*'"
  (($# == 1)) || return 0
  case $1 in
  rabbitmq | nats | redis) ;;
  *) die "unknown peer '$1' (expected one of: ${ALL_PEERS[*]})" ;;
  esac
  PEERS=("$1")
  PACKAGES=("$(package_of "$1")")
}

# Stops one peer and removes its folder; the others keep running.
stop_one() {
  local peer=$1 dir=$PEERS_DIR/$1
  if [[ $peer == rabbitmq ]] && pid_alive "$dir/rabbitmq.pid"; then
    rabbitmqctl_ stop "$dir/rabbitmq.pid" >/dev/null 2>&1 || stop_pid rabbitmq "$dir/rabbitmq.pid"
    ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
  else
    stop_pid "$peer" "$dir/$peer.pid"
  fi
  rm -rf "$dir"
  log "$peer: stopped; removed $dir"
}

command=${1:-}
shift || true
case $command in
install)
  select_peer "$@"
  cmd_install
  # Installing one peer by name is the one command the benchmark suggests: start it too.
  if (($# == 1)); then cmd_start; fi
  ;;
start)
  select_peer "$@"
  cmd_start
  ;;
stop)
  select_peer "$@"
  if (($# == 1)); then stop_one "$1"; else cmd_stop; fi
  ;;
status) cmd_status ;;
*) die "usage: scripts/peers.sh install|start|stop [rabbitmq|nats|redis] | status" ;;
esac
