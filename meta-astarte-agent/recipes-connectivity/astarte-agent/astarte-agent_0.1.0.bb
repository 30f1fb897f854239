SUMMARY = "Astarte device agent: a D-Bus system service that connects the device to Astarte"
DESCRIPTION = "astarte-agent connects an embedded Linux device to the Astarte IoT platform. \
               Programs on the device talk to it over D-Bus; it talks to Astarte over the \
               Astarte MQTT v1 protocol with mutual TLS, registers the device with the \
               Pairing API and keeps its client certificate and session correct."
HOMEPAGE = "https://github.com/astarte-platform/astarte-agent"
BUGTRACKER = "https://github.com/astarte-platform/astarte-agent/issues"
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"
CVE_PRODUCT = "astarte-agent"

# rusqlite links the image's SQLite (through pkg-config). The agent does not link OpenSSL:
# TLS, keys and CSRs use rustls/ring (openssl is only a development dependency of the tests,
# which bitbake does not build).
DEPENDS += "sqlite3"

# The project's repository: see README.md, "The source" (the layer lives in the same repository).
SRC_URI = "git://github.com/astarte-platform/astarte-agent.git;protocol=https;branch=main;destsuffix=${BP}"
SRCREV = "23608cce965473cfde841452e9a77cd9dde9a84c"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd

# tpm: credentials sealed by the TPM (cargo feature `tpm`, tpm2-tss from meta-tpm), and the
# systemd drop-in that opens /dev/tpmrm0 to the service. tpm2-tss creates the `tss` group and
# the udev rule that gives it the device.
PACKAGECONFIG ??= ""
PACKAGECONFIG[tpm] = ",,tpm2-tss,tpm2-tss libtss2 libtss2-tcti-device"
CARGO_BUILD_FLAGS += "${@bb.utils.contains('PACKAGECONFIG', 'tpm', '--features tpm', '', d)}"

SYSTEMD_SERVICE:${PN} = "astarte-agent.service"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system astarte"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir ${localstatedir}/lib/astarte-agent \
                       --shell /sbin/nologin --user-group astarte-agent"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/astarte-agent.service ${D}${systemd_system_unitdir}/
    if ${@bb.utils.contains('PACKAGECONFIG', 'tpm', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}/astarte-agent.service.d
        install -m 0644 ${S}/systemd/astarte-agent.service.d/tpm.conf \
            ${D}${systemd_system_unitdir}/astarte-agent.service.d/
    fi

    install -d ${D}${datadir}/dbus-1/system.d ${D}${datadir}/dbus-1/system-services
    install -m 0644 ${S}/dbus/org.astarte_platform.Agent1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${S}/dbus/org.astarte_platform.Agent1.service ${D}${datadir}/dbus-1/system-services/

    install -d ${D}${sysconfdir}/astarte-agent/interfaces
    install -m 0644 ${S}/dist/config.toml ${D}${sysconfdir}/astarte-agent/config.toml

    install -d ${D}${datadir}/astarte-agent/interfaces
    install -m 0644 ${S}/examples/interfaces/*.json ${D}${datadir}/astarte-agent/interfaces/
}

# ${datadir}/${BPN} (the shipped interfaces) is in FILES:${PN} by default.
FILES:${PN} += "${systemd_system_unitdir}/astarte-agent.service.d \
                ${datadir}/dbus-1/system.d \
                ${datadir}/dbus-1/system-services \
"
CONFFILES:${PN} = "${sysconfdir}/astarte-agent/config.toml"
RDEPENDS:${PN} += "${VIRTUAL-RUNTIME_dbus}"
