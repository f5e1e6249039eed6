// Package embedded runs a NATS JetStream server inside the process: with no sockets for tests,
// and on a loopback port with file storage for the single-process mode, so the nats CLI and
// external feed publishers can connect to it.
package embedded

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config of an embedded server.
type Config struct {
	StoreDir string // JetStream file storage
	// Listen is "host:port" for client connections; empty means no socket at all (tests).
	Host string
	Port int
	// ServerName names the server in JetStream metadata.
	ServerName string
}

// Server is a running embedded server.
type Server struct {
	ns     *server.Server
	listen bool
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: store dir is required")
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		DontListen: cfg.Host == "",
		Host:       cfg.Host,
		Port:       cfg.Port,
		NoSigs:     true,
		NoLog:      true,
		// Events of a large advisory carry many packages.
		MaxPayload: 8 << 20,
	}
	if opts.ServerName == "" {
		opts.ServerName = "patchfleet"
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 30s")
	}
	return &Server{ns: ns, listen: !opts.DontListen}, nil
}

// ClientURL is the address external clients connect to ("" when the server has no socket).
func (s *Server) ClientURL() string {
	if !s.listen {
		return ""
	}
	return s.ns.ClientURL()
}

// Connect returns a connection to the server, in-process (no socket) whatever the config.
func (s *Server) Connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.InProcessServer(s.ns), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(nats.DefaultURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s to embedded nats: %w", name, err)
	}
	return nc, nil
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
