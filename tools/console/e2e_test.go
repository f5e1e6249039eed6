//go:build e2e

package console

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/patchfleet/patchfleet/events"
)

// ensureBrowser installs Debian's chromium and playwright-core when they are missing.
func ensureBrowser(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Log("installing chromium with apt-get")
		if out, err := exec.Command("apt-get", "install", "-y", "chromium").CombinedOutput(); err != nil {
			t.Fatalf("apt-get install chromium: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Log("installing playwright-core with npm")
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install: %v\n%s", err, out)
		}
	}
}

// TestE2EConsole drives the console in headless chromium against a test bus with query
// responders: sign-in, refusals, the overview, a rollout updating live, an approval (asserted
// on the bus) and every page, with screenshots in e2e/screenshots.
func TestE2EConsole(t *testing.T) {
	dir, _ := filepath.Abs("e2e")
	ensureBrowser(t, dir)
	h := startHarness(t, nil)
	shots := filepath.Join(dir, "screenshots")

	runScript(t, dir, "console.mjs", 4*time.Minute, []string{"CONSOLE_URL=" + h.web.URL, "CONSOLE_TOKEN=" + aliceToken,
		"SCREENSHOTS=" + shots, "PLAN_HASH=" + planHash}, func(step string) {
		switch step {
		case "log web-2":
			msg := nats.NewMsg("pf.logs.web-2")
			msg.Header.Set("Patchfleet-Job-Id", "job-2")
			msg.Data = []byte("Unpacking libssl3:amd64 (3.0.15-1~deb12u1) over (3.0.14-1~deb12u1) ...\nSetting up libssl3:amd64 (3.0.15-1~deb12u1) ...\n")
			if err := h.bus.Conn.PublishMsg(msg); err != nil {
				t.Fatal(err)
			}
		case "upgrade-completed web-2":
			h.bus.Publish(t, events.UpgradeCompleted{JobID: "job-2", RolloutID: "r-running", HostID: "web-2",
				Packages: []events.PackageResult{{Name: "libssl3", Before: "3.0.14-1~deb12u1", After: "3.0.15-1~deb12u1"}}}, "r-running")
		case "approved":
			var approved []events.RolloutApproved
			for _, env := range h.decisions(t) {
				var e events.RolloutApproved
				if env.Type == "RolloutApproved" && events.DecodeData(env, &e) == nil {
					approved = append(approved, e)
				}
			}
			if len(approved) != 1 || approved[0].PlanHash != planHash || approved[0].By != "alice" || approved[0].RolloutID != "r-waiting" {
				t.Errorf("RolloutApproved on the bus: %+v, want one by alice naming plan %s", approved, planHash)
			}
		default:
			t.Errorf("unknown step %q", step)
		}
	})
	if n := len(h.decisions(t)); n != 1 {
		t.Errorf("%d decisions on the bus, want only the approval", n)
	}
}

// runScript runs a browser test script (node, in dir) with env added, calling step for each
// "STEP <name>" it prints and answering "ok" when step returns; the script must end with DONE.
func runScript(t *testing.T, dir, script string, timeout time.Duration, env []string, step func(string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = testLog{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if line == "DONE" {
			done = true
			_ = stdin.Close()
		}
		name, ok := strings.CutPrefix(line, "STEP ")
		if !ok {
			continue
		}
		step(name)
		if _, err := io.WriteString(stdin, "ok\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil || !done {
		t.Fatalf("browser test %s failed: %v (finished: %v)", script, err, done)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
