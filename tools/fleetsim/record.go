package fleetsim

import "github.com/patchfleet/patchfleet/events/hostops"

// record is what a host saw, for fault tests: authenticated connections, commands, installs
// that changed packages, and how many changing operations overlapped.
type record struct {
	conns, commands, installs int
	changing, maxChanging     int
}

// alters reports whether an op alters the host (as opposed to reading it).
func alters(op string) bool {
	switch op {
	case hostops.OpRepair, hostops.OpInstall, hostops.OpFullUpgrade, hostops.OpSecurityUpgrade,
		hostops.OpUnattended, hostops.OpReboot, hostops.OpDocker:
		return true
	}
	return false
}

func (h *Host) note(f func(r *record)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.rec)
}

func (h *Host) read(f func(r record) int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(h.rec)
}

// Connections counts the SSH connections that completed authentication.
func (h *Host) Connections() int { return h.read(func(r record) int { return r.conns }) }

// Commands counts exec requests (any command line, accepted or not).
func (h *Host) Commands() int { return h.read(func(r record) int { return r.commands }) }

// Installs counts install, full-upgrade and security-upgrade ops that changed at least one
// package.
func (h *Host) Installs() int { return h.read(func(r record) int { return r.installs }) }

// MaxConcurrentChanges is the most changing ops (repair, installs, upgrades, unattended,
// reboot, docker) that ran on the host at once, from the script's start to its exit status.
func (h *Host) MaxConcurrentChanges() int { return h.read(func(r record) int { return r.maxChanging }) }
