// Package cli is the operator command line, patchfleet: hosts, exposure, advisories,
// rollouts (watched live from the event stream), decisions, on-demand rollouts, previews,
// policy checks and host imports. It asks the query endpoints over NATS request/reply and
// publishes decisions as events, with the same NATS credentials as the services; host
// imports go to the inventory's HTTP API with a bearer token.
//
// Output is a table for people and JSON with -o json. Exit status: 0 ok, 1 error, 2 usage.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/query"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// usageError marks a command line that does not parse.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// App is what the commands share: options, output, and the connection once made.
type App struct {
	Out, Err io.Writer
	Env      func(string) (string, bool)
	Now      func() time.Time
	// Connect dials NATS; tests replace it with the in-process bus.
	Connect func(o *Options) (*nats.Conn, error)

	opts Options
	nc   *nats.Conn
}

// Options are the global flags.
type Options struct {
	NATSURL, Creds, User, Password, NKey, CA, Cert, Key, Inbox string
	InventoryURL, Token                                        string
	Output                                                     string
	Timeout                                                    time.Duration
	As                                                         string
}

func (a *App) env(name, def string) string {
	if a.Env != nil {
		if v, ok := a.Env(name); ok && v != "" {
			return v
		}
	}
	return def
}

// Main runs the command line and returns the exit status.
func Main(ctx context.Context, app *App, args []string) int {
	root := NewRoot(app)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if app.nc != nil {
		app.nc.Close()
	}
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(app.Err, "patchfleet: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		return ExitUsage
	}
	return ExitError
}

func (a *App) conn() (*nats.Conn, error) {
	if a.nc != nil {
		return a.nc, nil
	}
	connect := a.Connect
	if connect == nil {
		connect = dial
	}
	nc, err := connect(&a.opts)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", a.opts.NATSURL, err)
	}
	a.nc = nc
	return nc, nil
}

func dial(o *Options) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("patchfleet-cli"), nats.Timeout(o.Timeout)}
	if o.Inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.Inbox))
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.NKey != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	nc, err := nats.Connect(o.NATSURL, opts...)
	if err != nil {
		return nil, err
	}
	// A refused inbox would make every query time out; say why at once.
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if err := events.CheckInbox(ctx, nc); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

func (a *App) client() (query.Client, error) {
	nc, err := a.conn()
	return query.Client{NC: nc}, err
}

func (a *App) js() (jetstream.JetStream, error) {
	nc, err := a.conn()
	if err != nil {
		return nil, err
	}
	return jetstream.New(nc)
}

func (a *App) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), a.opts.Timeout)
}

func (a *App) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// render writes v as JSON, or with the table renderer.
func (a *App) render(v any, table func(io.Writer) error) error {
	if a.opts.Output == "json" {
		return writeJSON(a.Out, v)
	}
	return table(a.Out)
}

// args checks the number of positional arguments, as a usage error.
func args(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if len(a) != n {
			return usagef("%s: want %s", cmd.CommandPath(), names)
		}
		return nil
	}
}

// NewRoot builds the command tree.
func NewRoot(a *App) *cobra.Command {
	root := &cobra.Command{
		Use:           "patchfleet",
		Short:         "Operate Patchfleet: hosts, exposure, rollouts and decisions",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.opts.Output != "table" && a.opts.Output != "json" {
				return usagef("-o %q: want table or json", a.opts.Output)
			}
			if a.opts.Password == "" {
				a.opts.Password = a.secret("PATCHFLEET_NATS_PASSWORD")
			}
			if a.opts.Token == "" {
				a.opts.Token = a.secret("PATCHFLEET_INVENTORY_TOKEN")
			}
			return nil
		},
	}
	root.SetOut(a.Out)
	root.SetErr(a.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVar(&a.opts.NATSURL, "nats-url", a.env("PATCHFLEET_NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s) [PATCHFLEET_NATS_URL]")
	f.StringVar(&a.opts.Creds, "nats-creds", a.env("PATCHFLEET_NATS_CREDS", ""), "NATS credentials file [PATCHFLEET_NATS_CREDS]")
	f.StringVar(&a.opts.User, "nats-user", a.env("PATCHFLEET_NATS_USER", ""), "NATS user [PATCHFLEET_NATS_USER]; password from PATCHFLEET_NATS_PASSWORD(_FILE)")
	f.StringVar(&a.opts.NKey, "nats-nkey", a.env("PATCHFLEET_NATS_NKEY", ""), "NATS NKEY seed file [PATCHFLEET_NATS_NKEY]")
	f.StringVar(&a.opts.CA, "nats-ca", a.env("PATCHFLEET_NATS_CA", ""), "CA file for NATS TLS [PATCHFLEET_NATS_CA]")
	f.StringVar(&a.opts.Cert, "nats-cert", a.env("PATCHFLEET_NATS_CERT", ""), "client certificate for NATS TLS [PATCHFLEET_NATS_CERT]")
	f.StringVar(&a.opts.Key, "nats-key", a.env("PATCHFLEET_NATS_KEY", ""), "client key for NATS TLS [PATCHFLEET_NATS_KEY]")
	f.StringVar(&a.opts.Inbox, "nats-inbox", a.env("PATCHFLEET_NATS_INBOX", events.UserInbox("cli")), "NATS reply subject prefix, the user's own [PATCHFLEET_NATS_INBOX]")
	f.StringVar(&a.opts.InventoryURL, "inventory-url", a.env("PATCHFLEET_INVENTORY_URL", "http://127.0.0.1:8080"), "inventory HTTP endpoint [PATCHFLEET_INVENTORY_URL]; token from PATCHFLEET_INVENTORY_TOKEN(_FILE)")
	f.StringVarP(&a.opts.Output, "output", "o", "table", "output: table or json")
	f.DurationVar(&a.opts.Timeout, "timeout", 10*time.Second, "time limit of one query")
	f.StringVar(&a.opts.As, "as", a.env("PATCHFLEET_USER", a.env("USER", "")), "who decides: the approver name policies list [PATCHFLEET_USER, USER]")

	root.AddCommand(hostsCmd(a), hostCmd(a), exposedCmd(a), advisoriesCmd(a), rolloutsCmd(a), rolloutCmd(a),
		decisionCmd(a, "approve"), decisionCmd(a, "reject"), decisionCmd(a, "pause"), decisionCmd(a, "resume"), decisionCmd(a, "cancel"),
		requestCmd(a), previewCmd(a), policyCmd(a))
	return root
}

// secret reads NAME_FILE or NAME from the environment.
func (a *App) secret(name string) string {
	if path := a.env(name+"_FILE", ""); path != "" {
		if b, err := readFile(path); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return a.env(name, "")
}
