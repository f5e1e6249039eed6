// Package hostops defines the remote operations the executor performs on a
// Debian or Ubuntu host — read its dpkg state, repair an interrupted dpkg,
// upgrade exactly some packages (apt-get update first, in the same script, when
// asked), full-upgrade, configure
// unattended-upgrades, reboot, run the health check, upgrade Docker — as
// POSIX sh scripts and parsers of what they print. It is the host-side
// counterpart of hostfacts: pure builders and parsers, no IO.
//
// Every script starts with
//
//	# patchfleet:op <name> v1
//	# patchfleet:args <compact JSON>      (only for ops with arguments)
//
// so that a simulator can tell exactly what was asked (ParseOp), and prints
// a report of sections like the inventory scan:
//
//	==> patchfleet:op <name> 1
//	==> patchfleet:section <section>
//	<stdout>
//	==> patchfleet:stderr              (only when something was written to stderr)
//	<stderr>
//	==> patchfleet:status <exit status>
//	...
//	==> patchfleet:end
//
// The script's own exit status is that of its main step (apt-get, dpkg, the
// health check), so a caller that only looks at the exit status is not
// misled. Package names and versions are validated with package deb before
// they are quoted into a script: a name that is not Debian policy (one
// starting with '-', say) is refused, never built.
//
// See README.md for every op's script and output.
package hostops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/patchfleet/patchfleet/events/deb"
	"github.com/patchfleet/patchfleet/events/shell"
)

// FormatVersion is the report format the scripts print and the parsers read.
const FormatVersion = "1"

// Op names, as in the script header and the report's first line. The
// security-upgrade op carries AptArgs.
const (
	OpScan        = "scan" // hostfacts.ScanScript; recognised by ParseOp only
	OpState       = "state"
	OpRepair      = "repair"
	OpInstall     = "install"
	OpFullUpgrade = "full-upgrade"
	OpUnattended  = "unattended"
	OpReboot      = "reboot"
	OpHealth      = "health"
	OpDocker      = "docker"
	// OpSecurityUpgrade upgrades every package whose candidate apt takes
	// from a security origin, and nothing else.
	OpSecurityUpgrade = "security-upgrade"
)

const (
	headerPrefix = "# patchfleet:op "
	argsPrefix   = "# patchfleet:args "
	markerPrefix = "==> patchfleet:"
)

// Target is a package to upgrade, optionally to an exact version.
type Target struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Validate checks the name and version against Debian policy.
func (t Target) Validate() error {
	if err := deb.ValidPackageName(t.Name); err != nil {
		return err
	}
	if t.Version != "" {
		if err := deb.ValidVersion(t.Version); err != nil {
			return fmt.Errorf("package %s: %w", t.Name, err)
		}
	}
	return nil
}

// arg returns the apt-get argument: name or name=version.
func (t Target) arg() string {
	if t.Version == "" {
		return t.Name
	}
	return t.Name + "=" + t.Version
}

// Arguments of each op, as carried on the script's args line. The fields
// are exported for the simulator, which decodes them from ParseOp.
type (
	StateArgs struct {
		Packages []string `json:"packages,omitempty"`
	}
	AptArgs struct {
		LockTimeoutS int  `json:"lock_timeout_s"`
		Update       bool `json:"update,omitempty"`
	}
	InstallArgs struct {
		Targets      []Target `json:"targets"`
		LockTimeoutS int      `json:"lock_timeout_s"`
		Update       bool     `json:"update,omitempty"`
	}
	UnattendedArgs struct {
		AutoReboot   bool `json:"auto_reboot"`
		LockTimeoutS int  `json:"lock_timeout_s"`
	}
	RebootArgs struct {
		DelayS int `json:"delay_s"`
	}
	HealthArgs struct {
		Command  string `json:"command"`
		TimeoutS int    `json:"timeout_s"`
	}
	DockerArgs struct {
		Packages     []Target `json:"packages"`
		Weave        string   `json:"weave,omitempty"`
		LockTimeoutS int      `json:"lock_timeout_s"`
		Update       bool     `json:"update,omitempty"`
	}
)

// ParseOp reads the header of a script: its op name and, when present, its
// arguments. ok is false for anything that is not a patchfleet op script
// of a version this package knows.
func ParseOp(script string) (name string, args json.RawMessage, ok bool) {
	first, rest, _ := strings.Cut(script, "\n")
	v, found := strings.CutPrefix(strings.TrimSuffix(first, "\r"), headerPrefix)
	if !found {
		return "", nil, false
	}
	name, ver, found := strings.Cut(v, " ")
	if !found || ver != "v1" || !validOpName(name) {
		return "", nil, false
	}
	second, _, _ := strings.Cut(rest, "\n")
	if a, found := strings.CutPrefix(strings.TrimSuffix(second, "\r"), argsPrefix); found {
		if !json.Valid([]byte(a)) {
			return "", nil, false
		}
		return name, json.RawMessage(a), true
	}
	return name, nil, true
}

func validOpName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// header writes the two header lines. args is nil for ops without any.
func header(b *strings.Builder, op string, args any) {
	b.WriteString(headerPrefix + op + " v1\n")
	if args != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(args); err != nil {
			panic(fmt.Sprintf("hostops: encode %s args: %v", op, err)) // plain structs always encode
		}
		// Encode ends with a newline; JSON strings escape any other.
		b.WriteString(argsPrefix + buf.String())
	}
	b.WriteString(prelude)
	fmt.Fprintf(b, "printf '%sop %%s %%s\\n' %s %s\n", markerPrefix, quote(op), FormatVersion)
}

// quote single-quotes s for sh.
func quote(s string) string { return shell.Quote(s) }

// seconds rounds d up to whole seconds for apt and timeout(1), at least min.
func seconds(d time.Duration, min int) int {
	s := int(math.Ceil(d.Seconds()))
	if s < min {
		s = min
	}
	return s
}

// maxHealthCommand bounds the health-check command (a policy string).
const maxHealthCommand = 4096

func validHealthCommand(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("health command: empty")
	case len(s) > maxHealthCommand:
		return fmt.Errorf("health command: longer than %d bytes", maxHealthCommand)
	case !utf8.ValidString(s):
		return fmt.Errorf("health command: not valid UTF-8")
	}
	for i, r := range s {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return fmt.Errorf("health command: control character %q at offset %d", r, i)
		}
	}
	return nil
}
