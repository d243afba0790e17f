#!/bin/bash
# The container's HEALTHCHECK: healthy when the relay's admin endpoint answers
# GET /healthz with 200 within 3 s (the relay alive and its actors answering).
# Plain bash (/dev/tcp), so the image needs no curl. The address defaults to
# the image's admin = "127.0.0.1:9100"; with an admin token, set
# TLSRELAY_ADMIN_TOKEN in the container's environment.
set -eu
host=${TLSRELAY_HEALTH_HOST:-127.0.0.1}
port=${TLSRELAY_HEALTH_PORT:-9100}
crlf=$'\r\n'

exec 3<>"/dev/tcp/$host/$port"
request="GET /healthz HTTP/1.0${crlf}Host: $host:$port${crlf}"
if [ -n "${TLSRELAY_ADMIN_TOKEN:-}" ]; then
  request+="Authorization: Bearer ${TLSRELAY_ADMIN_TOKEN}${crlf}"
fi
printf '%s' "$request$crlf" >&3
read -r -t 3 status_line <&3
[[ $status_line =~ ^HTTP/1\.[01]\ 200 ]]
