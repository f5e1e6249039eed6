// Package natstest runs NATS servers from Patchfleet's deployment configuration for tests:
// the committed deployments/nats/auth.conf with freshly made NKEYs and a test CA, as one
// in-process server (StartServer) or as a cluster of real nats-server processes
// (StartCluster) whose nodes can be killed and restarted.
package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/tools/natsauth"
)

// DeploymentDir is deployments/nats in this checkout.
func DeploymentDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "deployments", "nats")
}

// Env is a configuration directory: nkeys.conf, the committed auth.conf, every user's seed,
// and a CA with one certificate for 127.0.0.1 that serves servers and clients alike.
type Env struct {
	Dir string
	TLS natsauth.TLS
}

// Setup makes an Env in a temporary directory.
func Setup(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	if err := natsauth.WriteKeys(dir); err != nil {
		t.Fatal(err)
	}
	auth, err := os.ReadFile(filepath.Join(DeploymentDir(), "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &Env{Dir: dir}
	if e.TLS, err = writeCerts(dir); err != nil {
		t.Fatal(err)
	}
	return e
}

// Seed is the path of a user's NKEY seed file.
func (e *Env) Seed(user string) string { return filepath.Join(e.Dir, natsauth.SeedFile(user)) }

// Bus is how user reaches the servers at url: its NKEY over TLS, its own reply inbox.
func (e *Env) Bus(url, user string, replicas int) events.BusConfig {
	return events.BusConfig{URL: url, NKeyFile: e.Seed(user), CAFile: e.TLS.CA, Replicas: replicas,
		InboxPrefix: events.UserInbox(user)}
}

// WriteNode writes a node's configuration into the directory and returns its path.
func (e *Env) WriteNode(n natsauth.Node) (string, error) {
	path := filepath.Join(e.Dir, n.Name+".conf")
	return path, os.WriteFile(path, []byte(natsauth.NodeConfig(n)), 0o644)
}

// StartServer runs one server in the process from a standalone node configuration (TLS for
// clients, the committed permissions) and returns its client URL.
func StartServer(t testing.TB, e *Env) string {
	t.Helper()
	path, err := e.WriteNode(natsauth.Node{
		Name: "pf-nats-test", Listen: "127.0.0.1:-1", StoreDir: filepath.Join(e.Dir, "js"), ClientTLS: &e.TLS,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats config %s: %v", path, err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats server not ready after 30s")
	}
	return ns.ClientURL()
}

// writeCerts makes a CA and a certificate for 127.0.0.1 and localhost, usable by servers
// (clients and routes) and by clients.
func writeCerts(dir string) (natsauth.TLS, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return natsauth.TLS{}, err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "patchfleet test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return natsauth.TLS{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return natsauth.TLS{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "pf-nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return natsauth.TLS{}, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return natsauth.TLS{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return natsauth.TLS{}, err
	}
	t := natsauth.TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")}
	for path, block := range map[string]*pem.Block{
		t.CA: {Type: "CERTIFICATE", Bytes: caDER}, t.Cert: {Type: "CERTIFICATE", Bytes: leafDER},
		t.Key: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return natsauth.TLS{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return t, nil
}
