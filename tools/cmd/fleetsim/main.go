// Command fleetsim serves simulated Debian hosts over SSH on loopback for
// scale and fault tests of the scanner and the executor.
//
//	fleetsim -n 1000 -base-port 30000 -faults drop=1,apt-fail=5 -out /tmp/fleetsim
//
// It writes <out>/hosts.json (address, port, host key, image, faults per
// host), <out>/known_hosts and <out>/id_ed25519 (the client key every host
// accepts), prints how to reach the hosts, and serves until SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/patchfleet/patchfleet/tools/fleetsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		n           = flag.Int("n", 100, "number of hosts")
		basePort    = flag.Int("base-port", 30000, "host i listens on 127.0.0.1:base-port+i (0: any free port); keep the range below the kernel's ephemeral ports (net.ipv4.ip_local_port_range)")
		seed        = flag.String("seed", "fleetsim", "derives host and client keys and which hosts get faults")
		faults      = flag.String("faults", "", "percent of hosts per fault: drop=1,apt-fail=5,lock-held=2,reboot-hang=1,slow=5,host-key-change=1,health-fail=2")
		lockFor     = flag.Duration("lock-held-for", 30*time.Second, "how long lock-held hosts hold the dpkg lock after start")
		slowFactor  = flag.Float64("slow-factor", 10, "latency multiplier of slow hosts")
		latency     = flag.Duration("latency", 20*time.Millisecond, "added to every command")
		aptLatency  = flag.Duration("apt-latency", 2*time.Second, "added to apt and dpkg ops")
		rebootDelay = flag.Duration("reboot-delay", 5*time.Second, "how long a rebooting host stays down")
		out         = flag.String("out", "fleetsim", "directory for hosts.json, known_hosts and id_ed25519")
	)
	flag.Parse()
	percent, err := fleetsim.ParseFaultPercents(*faults)
	if err != nil {
		return fmt.Errorf("-faults: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	fleet, err := fleetsim.Start(ctx, fleetsim.Options{
		N: *n, BasePort: *basePort, Seed: *seed,
		Latency: *latency, AptLatency: *aptLatency, RebootDelay: *rebootDelay,
		Faults: fleetsim.Faults{Percent: percent, LockHeldFor: *lockFor, SlowFactor: *slowFactor},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	defer fleet.Close()

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	manifest, err := json.MarshalIndent(fleet.Manifest(), "", "  ")
	if err != nil {
		return fmt.Errorf("hosts.json: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(fleet.ClientPrivateKey(), "fleetsim client")
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	keyPath := filepath.Join(*out, "id_ed25519")
	for path, data := range map[string][]byte{
		filepath.Join(*out, "hosts.json"):  append(manifest, '\n'),
		filepath.Join(*out, "known_hosts"): fleet.KnownHosts(),
		keyPath:                            pem.EncodeToMemory(block),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	hosts := fleet.Hosts()
	fmt.Printf("fleetsim: %d hosts up in %v on 127.0.0.1:%d-%d\n", len(hosts), time.Since(start).Round(time.Millisecond),
		hosts[0].Port(), hosts[len(hosts)-1].Port())
	fmt.Printf("  hosts:       %s\n  known_hosts: %s\n  client key:  %s\n",
		filepath.Join(*out, "hosts.json"), filepath.Join(*out, "known_hosts"), keyPath)
	fmt.Printf("  try:         ssh -i %s -o UserKnownHostsFile=%s -p %d root@127.0.0.1 sh -s < events/hostfacts/scan.sh\n",
		keyPath, filepath.Join(*out, "known_hosts"), hosts[0].Port())
	<-ctx.Done()
	logger.Info("fleetsim stopping")
	return nil
}
