#!/usr/bin/python3
"""A device app talking to astarte-agent over D-Bus, in Python.

It sends a datastream value, sets a property, prints every DataReceived signal and handles
the remote command "hello" (RegisterHandler, then CommandRequested -> Complete). It prints
"ready" once it listens, and exits after completing one command (a real app keeps running).

Library: python3-dbus with PyGObject's GLib main loop (Debian: python3-dbus, python3-gi).
Every Debian release and Yocto's oe-core itself (python3-dbus, python3-pygobject) ship both:
no pip and no extra layer on the device. They are installed for the distribution's
interpreter, /usr/bin/python3, not for a pyenv or virtualenv python3.

Bus: the system bus; DBUS_SYSTEM_BUS_ADDRESS points it elsewhere (a test's private bus).
"""
import dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

AGENT, OBJECT = "org.astarte_platform.Agent1", "/org/astarte_platform/Agent1"
DEVICE, COMMANDS = AGENT + ".Device", AGENT + ".Commands"
EXAMPLE = "org.astarte-platform.agent.example."

DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()
agent = bus.get_object(AGENT, OBJECT, introspect=False)
device = dbus.Interface(agent, DEVICE)
commands = dbus.Interface(agent, COMMANDS)
loop = GLib.MainLoop()


def on_data(interface, path, value, timestamp_ms):
    print(f"DataReceived {interface} {path} {value}", flush=True)


def on_command(command_id, name, args):
    print(f"CommandRequested {command_id} {name} {' '.join(args)}", flush=True)
    try:
        # exit code 0 reports "completed", anything else "failed".
        commands.Complete(command_id, 0, f"hello {' '.join(args)}\n", "")
    finally:
        loop.quit()


# Subscribe first: a signal sent before its match rule is in place is lost.
bus.add_signal_receiver(on_data, "DataReceived", DEVICE, AGENT, OBJECT)
# CommandRequested is sent to this connection only: the handler is this connection, and the
# agent forgets it when the app leaves the bus.
bus.add_signal_receiver(on_command, "CommandRequested", COMMANDS, AGENT, OBJECT)
commands.RegisterHandler("hello")

device.Send(EXAMPLE + "Telemetry", "/room1/double", dbus.Double(21.5), signature="ssv")
device.SetProperty(EXAMPLE + "DeviceConfig", "/name", dbus.String("kitchen"), signature="ssv")
print("ready", flush=True)
loop.run()
