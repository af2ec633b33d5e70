#!/bin/sh
# The original Python cloudagent-daemon 0.2.4, for comparison runs of the
# daemon bench in SSE mode.
#
#   original.sh VENV                 create VENV if absent, print the command
#   original.sh VENV HOME URL [N]    also prepare HOME for a backend at URL
#                                    (config.json, a fake claude in HOME/bin,
#                                    key sk_machine_bench) and print the exact
#                                    command for it
#
# The package declares Requires-Python >=3.12; it runs unchanged on 3.11
# (nothing in it is 3.12-only: typing.Self and datetime.UTC are 3.11), so
# pip is told to ignore the declaration. The dependencies are pinned to the
# versions the protocol notes were verified with: mcp 2.x removed
# mcp.server.fastmcp, which the bridge (`cloudagent-daemon mcp-bridge`)
# imports (the daemon itself starts without it); httpx 0.28.1 rather than
# the newer 0.29.0 that pip would pick.
#
# A venv is not relocatable (its scripts name its path): create it where it
# is used. End-to-end check and rough ack rate against a fake SSE backend:
#   python3 benches/support/original_check.py VENV [--body HOLD]
#
# The daemon learns its agents from the /v1/daemon/ready answer
# ({"agents":[{"agent_id":…}]}) or from `assign` events; a `deliver` for an
# agent it does not know is accepted too (its workspace is made on the fly).
# N (default 20) is only echoed as the agents list the backend should answer.
set -eu

venv=${1:?usage: original.sh VENV [HOME URL [N]]}
py=${PYTHON:-python3}

if [ ! -x "$venv/bin/cloudagent-daemon" ]; then
    "$py" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        --ignore-requires-python \
        'cloudagent-daemon==0.2.4' 'httpx==0.28.1' 'httpx-sse==0.4.3' \
        'mcp==1.30.0' 'websockets==17.4' >&2
    "$venv/bin/python" -c 'import cloudagent_daemon.main_loop, cloudagent_daemon.mcp_bridge' >&2
fi

if [ $# -lt 3 ]; then
    # Without config.json `start` needs --server-url/--api-key, which first
    # verifies the key over the WebSocket /v1/daemon/ws; an SSE-only backend
    # therefore needs the config.json written below.
    echo "env -i HOME=\$HOME PATH=\$HOME/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 $venv/bin/cloudagent-daemon start --transport sse"
    exit 0
fi

home=$2
url=$3
n=${4:-20}
mkdir -p "$home/bin" "$home/.cloudagent/daemon"
cat >"$home/bin/claude" <<'EOF'
#!/bin/sh
[ "$1" = --version ] && { echo '2.1.197 (Claude Code)'; exit 0; }
grep -q HOLD && exec sleep 3600
echo '{"type":"system","subtype":"init","session_id":"s"}'
echo '{"type":"assistant","message":{"content":[{"type":"tool_use","name":"mcp__cloudagent__send_message"}]}}'
echo '{"type":"result","is_error":false,"result":"ok"}'
EOF
chmod 755 "$home/bin/claude"
umask 077
printf '{"server_url": "%s", "machine_api_key": "sk_machine_bench", "host_id": "host_bench"}' \
    "$url" >"$home/.cloudagent/daemon/config.json"
echo "# /v1/daemon/ready should answer {\"host_id\":\"host_bench\",\"last_acked_seq\":0,\"agents\":[{\"agent_id\":\"agent_00\"}, … agent_$(printf %02d $((n - 1)))]}" >&2
echo "env -i HOME=$home PATH=$home/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 $venv/bin/cloudagent-daemon start --transport sse"
