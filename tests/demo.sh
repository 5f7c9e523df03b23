#!/bin/bash
# make demo: an echo service behind an inbound mtlsd, reached through an
# outbound mtlsd; then a peer with the wrong identity, refused and explained.
#
#   client --plain--> outbound mtlsd :18000 --mTLS--> inbound mtlsd :18443
#          --plain--> echo service :18080
set -eu

MTLSD=${1:-build/mtlsd}
CERTS=certs-example/out
work=$(mktemp -d)
pids=()

cleanup() {
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# Waits (at most 10 s) until HOST:PORT accepts connections.
wait_port() {
	local i
	for i in $(seq 1 100); do
		if /usr/bin/python3 -c "import socket,sys; socket.create_connection(('$1', $2), 0.2).close()" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "demo: nothing listens on $1:$2 after 10 s" >&2
	return 1
}

# Waits (at most 10 s) until an mtlsd log says it serves.
wait_serving() {
	local i
	for i in $(seq 1 100); do
		grep -q "serving with" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: mtlsd did not start; its log:" >&2
	cat "$1" >&2
	return 1
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. the legacy service: a plaintext echo on 127.0.0.1:18080"
/usr/bin/python3 tests/tools/echo_server.py 127.0.0.1 18080 &
pids+=($!)
wait_port 127.0.0.1 18080

step "2. inbound mtlsd: mTLS on 127.0.0.1:18443 -> 127.0.0.1:18080"
"$MTLSD" -t -c conf/demo-inbound.conf | sed 's/^/   /'
"$MTLSD" -c conf/demo-inbound.conf 2>"$work/inbound.log" &
pids+=($!)
wait_serving "$work/inbound.log"

step "3. outbound mtlsd: plaintext on 127.0.0.1:18000 -> mTLS to 127.0.0.1:18443"
"$MTLSD" -c conf/demo-outbound.conf 2>"$work/outbound.log" &
pids+=($!)
wait_serving "$work/outbound.log"

step "4. a request from the calling service, through both"
reply=$(/usr/bin/python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", 18000), 5)
s.settimeout(5)
s.sendall(b"hello through two mtlsd sidecars\n")
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    got += d
print(got.decode().strip())
PY
)
echo "   sent:     hello through two mtlsd sidecars"
echo "   received: $reply"
[ "$reply" = "hello through two mtlsd sidecars" ] || {
	echo "demo: the echo did not come back" >&2
	cat "$work"/*.log >&2
	exit 1
}

step "5. a peer with a valid certificate but the wrong identity"
echo "intruder" | timeout 10 openssl s_client -quiet -connect 127.0.0.1:18443 \
    -cert "$CERTS/other.crt" -cert_chain "$CERTS/other.crt" \
    -key "$CERTS/other.key" \
    -CAfile "$CERTS/ca-bundle.crt" >/dev/null 2>&1 || true
sleep 0.3
echo "   inbound mtlsd logged:"
grep ' reject ' "$work/inbound.log" | sed 's/^/   /' || {
	echo "demo: no rejection was logged" >&2
	exit 1
}

step "6. the same verdict, offline: mtlsd --explain"
"$MTLSD" -c conf/demo-inbound.conf --explain "$CERTS/other.crt" \
    --route api | sed 's/^/   /' || true

step "7. connection log lines"
grep ' conn ' "$work/inbound.log" "$work/outbound.log" | \
    sed "s|$work/||; s/^/   /"

echo
echo "demo: done; stopping the echo service and both mtlsd"
