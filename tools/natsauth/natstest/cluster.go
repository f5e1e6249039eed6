package natstest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchfleet/patchfleet/tools/freeport"
	"github.com/patchfleet/patchfleet/tools/natsauth"
)

var (
	buildOnce   sync.Once
	buildPath   string
	buildErr    error
	buildOutput []byte
)

// BuildServer builds the nats-server binary of the version the project depends on (once per
// test binary) and returns its path.
func BuildServer(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "patchfleet-nats-server-")
		if err != nil {
			buildErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		buildPath = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/nats-io/nats-server/v2")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..") // the tools module
		buildOutput, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build nats-server: %v\n%s", buildErr, buildOutput)
	}
	return buildPath
}

// Cluster is three nats-server processes on loopback with the committed permissions, TLS for
// clients and mutual TLS between the nodes.
type Cluster struct {
	Env    *Env
	binary string
	nodes  []*node
}

type node struct {
	cfg  natsauth.Node
	conf string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartCluster starts a 3-node cluster and waits until every node is healthy. The processes
// are killed when the test ends.
func StartCluster(t testing.TB, e *Env, binary string) *Cluster {
	t.Helper()
	ports := make([]int, 9)
	for i := range ports {
		ports[i] = freeport.For(t)
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[3+i]))
	}
	c := &Cluster{Env: e, binary: binary}
	for i := range 3 {
		n := natsauth.Node{
			Name: fmt.Sprintf("pf-nats-%d", i+1), Cluster: "patchfleet-test",
			Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]), ClusterAddr: routes[i], Routes: routes,
			Monitor:  fmt.Sprintf("127.0.0.1:%d", ports[6+i]),
			StoreDir: filepath.Join(e.Dir, fmt.Sprintf("js-%d", i+1)), ClientTLS: &e.TLS, RouteTLS: &e.TLS,
		}
		conf, err := e.WriteNode(n)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &node{cfg: n, conf: conf})
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		if err := c.WaitHealthy(i, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Name is node i's server name (as in JetStream cluster info).
func (c *Cluster) Name(i int) string { return c.nodes[i].cfg.Name }

// Index returns the node of a server name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.nodes {
		if n.cfg.Name == name {
			return i
		}
	}
	return -1
}

// URLs are the nodes' client URLs.
func (c *Cluster) URLs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, "tls://"+n.cfg.Listen)
	}
	return out
}

// URL is every node's client URL, comma-separated (PATCHFLEET_NATS_URL).
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

func (c *Cluster) start(i int) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %s already running", n.cfg.Name)
	}
	log, err := os.OpenFile(filepath.Join(c.Env.Dir, n.cfg.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.binary, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = log, log
	// A test that panics (a timeout) runs no cleanup: the node must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", n.cfg.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

// Kill kills node i (SIGKILL: no lame duck, no flush) and waits for it to exit.
func (c *Cluster) Kill(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
	n.cmd = nil
}

// Restart starts node i again on its configuration and storage and waits until it is healthy.
func (c *Cluster) Restart(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitHealthy(i, time.Minute)
}

// WaitHealthy polls node i's /healthz (JetStream caught up) until it answers 200.
func (c *Cluster) WaitHealthy(i int, timeout time.Duration) error {
	url := "http://" + c.nodes[i].cfg.Monitor + "/healthz"
	deadline := time.Now().Add(timeout)
	client := http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %s: %v (log: %s)", c.nodes[i].cfg.Name, timeout, err,
				filepath.Join(c.Env.Dir, c.nodes[i].cfg.Name+".log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
