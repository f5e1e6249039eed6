package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the harness starts, kills and starts again: a service binary or a
// nats-server. Its output goes to a log file, appended to across restarts.
type Proc struct {
	Name  string // executor-2, nats, …
	Ready string // URL that answers 200 once the process is ready (/readyz, /healthz)

	bin  string
	args []string
	env  []string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // how the last run ended
	starts int
}

// NewProc describes a process; Start runs it.
func NewProc(name, bin string, args, env []string, ready, logFile string) *Proc {
	return &Proc{Name: name, bin: bin, args: args, env: env, Ready: ready, log: logFile}
}

// Log is the path of the process's log file.
func (p *Proc) Log() string { return p.log }

// Start runs the process (again). It dies with the harness (parent-death signal).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("start %s: already running", p.Name)
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	fmt.Fprintf(f, "---- chaos: start %d at %s\n", p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.starts++
	return nil
}

// Signal sends sig and waits for the process to exit.
func (p *Proc) Signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("signal %s: not running", p.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %s of %s; killed", p.Name, timeout, sig)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return nil
}

// Kill is kill -9: no drain, no flush.
func (p *Proc) Kill() error { return p.Signal(syscall.SIGKILL, 10*time.Second) }

// Pid is the running process's id, 0 when stopped.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports a process that ended on its own (not through Signal), with how it ended.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, nil
	}
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// WaitReady polls the readiness URL until it answers 200, the process exits, or ctx ends.
func (p *Proc) WaitReady(ctx context.Context) error {
	client := http.Client{Timeout: 2 * time.Second}
	for {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited before it was ready: %v (log %s):\n%s", p.Name, err, p.log, tail(p.log, 2048))
		}
		resp, err := client.Get(p.Ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w (log %s)", p.Name, p.Ready, ctx.Err(), p.log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the process gracefully (SIGTERM), if it runs.
func (p *Proc) Stop() error {
	if p.Pid() == 0 {
		return nil
	}
	return p.Signal(syscall.SIGTERM, 30*time.Second)
}

// RepoRoot is the checkout this package was built from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Services are the four service binaries, by name.
var Services = []string{"advisory-ingest", "inventory", "planner", "executor"}

// BuildServices builds the service binaries into dir with one go build and returns their paths.
func BuildServices(ctx context.Context, dir string) (map[string]string, error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, s := range Services {
		args = append(args, "./services/"+s+"/cmd/"+s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build services: %w\n%s", err, out)
	}
	bins := map[string]string{}
	for _, s := range Services {
		bins[s] = filepath.Join(dir, s)
	}
	return bins, nil
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
