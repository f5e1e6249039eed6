// Command natsauth writes and checks Patchfleet's NATS server configuration.
//
//	natsauth generate DIR [-hosts a,b,c]   write auth.conf and the node configs (deployments/nats)
//	natsauth keys DIR                      create the users' NKEY seeds and nkeys.conf in DIR
//	natsauth permissions USER              print a user's publish/subscribe rules
//	natsauth streams                       create or update the streams, as the admin user,
//	                                       from the PATCHFLEET_NATS_* variables
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/patchfleet/patchfleet/db/service"
	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
	"github.com/patchfleet/patchfleet/tools/natsauth"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "generate":
		err = generate(args)
	case "keys":
		if len(args) != 1 {
			usage()
		}
		err = natsauth.WriteKeys(args[0])
	case "permissions":
		err = permissions(args)
	case "streams":
		err = streams()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "natsauth: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: natsauth generate DIR [-hosts a,b,c] | keys DIR | permissions USER | streams")
	os.Exit(2)
}

func generate(args []string) error {
	fs := flag.NewFlagSet("generate", flag.ExitOnError)
	hosts := fs.String("hosts", "", "the three servers' host names (default: the committed example names)")
	if len(args) < 1 {
		usage()
	}
	dir := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	files, err := natsauth.Files()
	if err != nil {
		return err
	}
	if *hosts != "" {
		hs := strings.Split(*hosts, ",")
		for i, n := range natsauth.ProductionNodes(hs) {
			files[fmt.Sprintf("node-%d.conf", i+1)] = natsauth.NodeConfig(n)
		}
	}
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func permissions(args []string) error {
	if len(args) != 1 {
		usage()
	}
	r, ok := natsauth.RoleOf(args[0])
	if !ok {
		return fmt.Errorf("no user %q", args[0])
	}
	p, err := r.Permissions()
	if err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"publish allow", p.PublishAllow}, {"publish deny", p.PublishDeny}, {"subscribe allow", p.SubscribeAllow}} {
		for _, s := range l.v {
			fmt.Printf("%-16s %s\n", l.name, s)
		}
	}
	if p.AllowResponses {
		fmt.Println("allow_responses  true")
	}
	return nil
}

// streams creates the contract's streams with the admin user: the step that lets services
// run without stream-management rights.
func streams() error {
	env := ops.FromOS()
	logger := env.Logger(os.Stderr, "text")
	bus := service.CommonFromEnv(env, "").Bus
	if err := errors.Join(env.Err(), bus.Validate()); err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nc, _, err := events.Connect(ctx, bus, "patchfleet-streams", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, c := range events.StreamConfigs(bus.Replicas) {
		logger.Info("stream ready", "stream", c.Name, "replicas", c.Replicas)
	}
	return nil
}
