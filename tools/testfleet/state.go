package testfleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// FleetState records a running fleet, so that `testfleet down` can tear it
// down after the process that started it is gone.
type FleetState struct {
	SupervisorPID int         `json:"supervisor_pid"`
	Dir           string      `json:"dir"`
	ClientKey     string      `json:"client_key"`
	KnownHosts    string      `json:"known_hosts"`
	Hosts         []HostState `json:"hosts"`
}

// HostState is one host in a FleetState.
type HostState struct {
	Name               string `json:"name"`
	Addr               string `json:"addr"`
	Port               int    `json:"port"`
	HostKey            string `json:"host_key"`
	HostKeyFingerprint string `json:"host_key_fingerprint"`
	BootID             string `json:"boot_id"`
}

// StateOf describes the fleet, supervised by process pid.
func StateOf(f *Fleet, pid int) FleetState {
	st := FleetState{SupervisorPID: pid, Dir: f.Dir(), ClientKey: f.ClientKeyPath(), KnownHosts: f.KnownHostsPath()}
	for _, h := range f.Hosts() {
		st.Hosts = append(st.Hosts, HostState{
			Name: h.Name(), Addr: h.Addr(), Port: h.Port(),
			HostKey:            strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey()))),
			HostKeyFingerprint: ssh.FingerprintSHA256(h.HostKey()),
			BootID:             h.BootID(),
		})
	}
	return st
}

// WriteState writes st to path atomically.
func WriteState(path string, st FleetState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := writeFileAtomic(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// TearDown stops a fleet recorded in st: it asks the supervising process to
// stop, kills the init of any host still running (which takes the host's
// processes and mounts with it) and removes the fleet's directory.
func TearDown(st FleetState, log *slog.Logger) error {
	if st.Dir == "" || !strings.HasPrefix(filepath.Base(st.Dir), "testfleet-") {
		return fmt.Errorf("tear down: %q is not a fleet directory", st.Dir)
	}
	if st.SupervisorPID > 0 && isFleetSupervisor(st.SupervisorPID) {
		log.Info("stopping supervisor", "pid", st.SupervisorPID)
		_ = syscall.Kill(st.SupervisorPID, syscall.SIGTERM)
		waitGone(func() bool { return isFleetSupervisor(st.SupervisorPID) }, 30*time.Second)
	}
	inits, err := hostInits(st.Dir)
	if err != nil {
		return fmt.Errorf("tear down: %w", err)
	}
	for _, pid := range inits {
		log.Info("killing host init", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if !waitGone(func() bool { p, _ := hostInits(st.Dir); return len(p) > 0 }, 10*time.Second) {
		return fmt.Errorf("tear down: host inits still running")
	}
	if _, err := os.Stat(st.Dir); err == nil {
		if err := removeTree(st.Dir); err != nil {
			return fmt.Errorf("tear down: %w", err)
		}
	}
	return nil
}

// isFleetSupervisor reports whether pid is a running testfleet command.
func isFleetSupervisor(pid int) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return strings.Contains(filepath.Base(string(argv0)), "testfleet")
}

// hostInits finds the init processes of hosts living under dir by the
// environment hostinit.sh runs with.
func hostInits(dir string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	marker := []byte("PF_MERGED=" + filepath.Clean(dir) + "/")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.HasPrefix(kv, marker) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// waitGone polls until alive reports false or the timeout passes; it
// reports whether it is gone.
func waitGone(alive func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
