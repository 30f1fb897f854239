/* A device app talking to astarte-agent over D-Bus, in C with sd-bus (libsystemd).
 *
 * It sends a datastream value, sets a property, prints every DataReceived signal and handles
 * the remote command "hello" (RegisterHandler, then CommandRequested -> Complete). It prints
 * "ready" once it listens, and exits after completing one command (a real app keeps running).
 *
 * Build: cc -o astarte-app astarte-app.c $(pkg-config --cflags --libs libsystemd)
 * (Debian: libsystemd-dev, pkg-config.) Bus: the system bus; DBUS_SYSTEM_BUS_ADDRESS points
 * it elsewhere (a test's private bus). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>

#define AGENT "org.astarte_platform.Agent1"
#define OBJECT "/org/astarte_platform/Agent1"
#define EXAMPLE "org.astarte-platform.agent.example."

static int done; /* 1 once a command is completed, < 0 on an error */

static int on_data(sd_bus_message *m, void *userdata, sd_bus_error *error) {
    const char *interface, *path, *type, *text;
    if (sd_bus_message_read(m, "ss", &interface, &path) < 0 ||
        sd_bus_message_peek_type(m, NULL, &type) < 0)
        return 0;
    if (strcmp(type, "s") == 0 && sd_bus_message_read(m, "v", "s", &text) >= 0)
        printf("DataReceived %s %s %s\n", interface, path, text);
    else /* other types: read them with sd_bus_message_read() as their signature says */
        printf("DataReceived %s %s (a value of type %s)\n", interface, path, type);
    return 0;
}

static int on_command(sd_bus_message *m, void *userdata, sd_bus_error *error) {
    const char *id, *name, *arg;
    char out[1024] = "hello";
    if (sd_bus_message_read(m, "ss", &id, &name) < 0 ||
        sd_bus_message_enter_container(m, 'a', "s") < 0)
        return done = -EBADMSG;
    while (sd_bus_message_read(m, "s", &arg) > 0)
        snprintf(out + strlen(out), sizeof out - strlen(out), " %s", arg);
    printf("CommandRequested %s %s%s\n", id, name, out + strlen("hello"));
    strncat(out, "\n", sizeof out - strlen(out) - 1);
    /* exit code 0 reports "completed", anything else "failed" */
    done = sd_bus_call_method(userdata, AGENT, OBJECT, AGENT ".Commands", "Complete", error,
                              NULL, "siss", id, 0, out, "");
    return done = done < 0 ? done : 1;
}

int main(void) {
    sd_bus *bus = NULL;
    sd_bus_error error = SD_BUS_ERROR_NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int r = sd_bus_open_system(&bus);
    /* Subscribe first: a signal sent before its match rule is in place is lost. */
    if (r >= 0)
        r = sd_bus_match_signal(bus, NULL, AGENT, OBJECT, AGENT ".Device", "DataReceived",
                                on_data, NULL);
    /* CommandRequested is sent to this connection only: the handler is this connection. */
    if (r >= 0)
        r = sd_bus_match_signal(bus, NULL, AGENT, OBJECT, AGENT ".Commands", "CommandRequested",
                                on_command, bus);
    if (r >= 0)
        r = sd_bus_call_method(bus, AGENT, OBJECT, AGENT ".Commands", "RegisterHandler", &error,
                               NULL, "s", "hello");
    if (r >= 0)
        r = sd_bus_call_method(bus, AGENT, OBJECT, AGENT ".Device", "Send", &error, NULL, "ssv",
                               EXAMPLE "Telemetry", "/room1/double", "d", 21.5);
    if (r >= 0)
        r = sd_bus_call_method(bus, AGENT, OBJECT, AGENT ".Device", "SetProperty", &error, NULL,
                               "ssv", EXAMPLE "DeviceConfig", "/name", "s", "kitchen");
    if (r >= 0)
        puts("ready");
    while (r >= 0 && done == 0) {
        r = sd_bus_process(bus, NULL);
        if (r == 0)
            r = sd_bus_wait(bus, UINT64_MAX);
    }
    r = r < 0 ? r : done < 0 ? done : 0;
    if (r < 0)
        fprintf(stderr, "astarte-app: %s\n", error.message ? error.message : strerror(-r));
    sd_bus_error_free(&error);
    sd_bus_flush_close_unref(bus);
    return r < 0;
}
