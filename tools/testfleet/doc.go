// Package testfleet runs disposable Debian 12 hosts on the local machine for
// tests that need a real sshd, dpkg and apt: the executor's and the
// inventory scanner's end-to-end tests, and `testfleet up` for people.
//
// Each host is an overlay of a cached debootstrap root filesystem, run in its
// own PID, mount and UTS namespaces, with its own sshd on 127.0.0.1, its own
// host key and boot id, and a local security repository as its only apt
// source. Reboots issued inside a host are modelled by its supervisor in the
// process that started the fleet. See README.md.
//
// Everything here needs root.
package testfleet
