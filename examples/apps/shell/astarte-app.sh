#!/bin/sh
# A device app talking to astarte-agent over D-Bus, in shell: busctl (systemd) for the calls,
# dbus-monitor (Debian: dbus-bin) for the signals.
#
#   astarte-app.sh             sends a datastream value, sets a property and prints every
#                              DataReceived signal; it prints "ready" once it listens, and
#                              exits when a remote command has finished (CommandFinished).
#   astarte-app.sh hello ARGS  the remote command "hello", run by the agent itself:
#                              [commands.hello] exec = ["/path/to/astarte-app.sh", "hello"]
#
# Why not RegisterHandler: the agent sends a command to the bus connection that registered
# for it, accepts Complete only from that connection, and forgets it when it closes; busctl,
# gdbus and dbus-send open a new connection for each call. A script is a configured command.
#
# Bus: the system bus; DBUS_SYSTEM_BUS_ADDRESS points busctl and dbus-monitor elsewhere.
set -eu

if [ "${1:-}" = hello ]; then # run by the agent: stdout and the exit code are the result
  shift
  echo "hello $*"
  exit 0
fi

AGENT=org.astarte_platform.Agent1
OBJECT=/org/astarte_platform/Agent1
EXAMPLE=org.astarte-platform.agent.example
signals="type='signal',sender='$AGENT',path='$OBJECT'"

dir=$(mktemp -d)
monitor=
trap 'kill $monitor 2>/dev/null; rm -rf "$dir"' EXIT
mkfifo "$dir/signals"
dbus-monitor --system "$signals,member='DataReceived'" "$signals,member='CommandFinished'" \
  >"$dir/signals" &
monitor=$!
exec 3<"$dir/signals"
# dbus-monitor prints nothing before its match rules are in place: its first line (its own
# NameAcquired signal) means it listens.
read -r _ <&3 || exit 1

busctl call $AGENT $OBJECT $AGENT.Device Send ssv $EXAMPLE.Telemetry /room1/double d 21.5
busctl call $AGENT $OBJECT $AGENT.Device SetProperty ssv $EXAMPLE.DeviceConfig /name s kitchen
echo ready

# dbus-monitor prints a header line per signal, then one line per argument.
while read -r line <&3; do
  case $line in
  *member=DataReceived)
    read -r _ interface <&3 && read -r _ path <&3 && read -r _ value <&3
    echo "DataReceived $interface $path $value" ;;
  *member=CommandFinished)
    read -r _ id <&3 && read -r _ status <&3
    echo "CommandFinished $id $status"
    exit 0 ;;
  esac
done
exit 1 # dbus-monitor stopped
