#!/bin/sh
# The rig's command channel in the guest (second serial port, ttyS1; started by the image's
# init when this file is present). One request per line: "<id> <base64 of a shell command>";
# one answer per request: "@@R <id> <exit status> <base64 of stdout+stderr>".
# Only tests/vm appends this file to the image; the appliance has no such channel.
stty raw -echo 2>/dev/null
echo "@@AGENT ready"
while read -r id b64; do
  [ -n "$id" ] || continue
  echo "$b64" | base64 -d > /tmp/agent.cmd 2>/dev/null
  sh /tmp/agent.cmd > /tmp/agent.out 2>&1 </dev/null
  rc=$?
  printf '@@R %s %s %s\n' "$id" "$rc" "$(base64 /tmp/agent.out | tr -d '\n')"
done
