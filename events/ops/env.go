package ops

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads typed configuration from environment variables, collecting every problem so a
// bad configuration is reported at once, each naming its variable. Only main uses it.
type Env struct {
	Lookup func(string) (string, bool)
	errs   []error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{Lookup: os.LookupEnv} }

func (e *Env) fail(name, raw string, why string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: %s", name, raw, why))
}

// String returns the variable or def.
func (e *Env) String(name, def string) string {
	if v, ok := e.Lookup(name); ok && v != "" {
		return v
	}
	return def
}

// Required returns the variable, recording an error when it is unset or empty.
func (e *Env) Required(name string) string {
	v, ok := e.Lookup(name)
	if !ok || v == "" {
		e.errs = append(e.errs, fmt.Errorf("%s is required", name))
	}
	return v
}

// Int returns the variable as an integer or def.
func (e *Env) Int(name string, def int) int {
	v, ok := e.Lookup(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(name, v, "not an integer")
		return def
	}
	return n
}

// Duration returns the variable as a Go duration ("30s", "5m") or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.Lookup(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, v, "not a duration such as 30s or 5m")
		return def
	}
	return d
}

// Bool returns the variable as a boolean or def.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.Lookup(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, v, "not a boolean (true or false)")
		return def
	}
	return b
}

// Secret reads a secret from the file named by NAME_FILE, or from NAME itself. The value is
// never part of an error message.
func (e *Env) Secret(name string) string {
	if path, ok := e.Lookup(name + "_FILE"); ok && path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s_FILE: %w", name, err))
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	v, _ := e.Lookup(name)
	return v
}

// Err returns every problem found, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Logger builds the process logger: JSON in production, text for people in development.
// PATCHFLEET_LOG_FORMAT=json|text, PATCHFLEET_LOG_LEVEL=debug|info|warn|error.
func (e *Env) Logger(w io.Writer, defFormat string) *slog.Logger {
	var level slog.Level
	lv := e.String("PATCHFLEET_LOG_LEVEL", "info")
	if err := level.UnmarshalText([]byte(lv)); err != nil {
		e.fail("PATCHFLEET_LOG_LEVEL", lv, "not one of debug, info, warn, error")
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := e.String("PATCHFLEET_LOG_FORMAT", defFormat); f {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts))
	case "text":
		return slog.New(slog.NewTextHandler(w, opts))
	default:
		e.fail("PATCHFLEET_LOG_FORMAT", f, "not one of json, text")
		return slog.New(slog.NewJSONHandler(w, opts))
	}
}
