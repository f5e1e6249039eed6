package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BusConfig says how a service reaches NATS.
type BusConfig struct {
	URL       string // nats://host:4222[,nats://…]
	CredsFile string // NATS credentials (JWT + NKEY seed) file, optional
	User      string // user/password auth, optional
	Password  string
	NKeyFile  string // NKEY seed file, optional
	CAFile    string // TLS: trust these CAs
	CertFile  string // TLS: client certificate (mutual TLS)
	KeyFile   string
	Replicas  int // stream replicas: 1 on one machine, 3 on a cluster
	// InboxPrefix replaces "_INBOX" for this connection's replies (request replies, JetStream
	// API answers, publish acknowledgements, pulled messages), so that NATS permissions can give
	// each user replies of its own: deployments/nats lets a user subscribe to UserInbox(user)
	// only. Empty means the nats.go default, "_INBOX".
	InboxPrefix string
}

// UserInbox is the reply inbox prefix of a NATS user in deployments/nats, "_INBOX_<user>":
// only that user may subscribe to UserInbox(user)+".>". A user name is one subject token.
func UserInbox(user string) string { return "_INBOX_" + user }

// ErrInboxRefused means the server does not let the connection subscribe to its own reply
// inbox: no request, JetStream call or pull could ever get an answer.
var ErrInboxRefused = errors.New("nats refused the reply inbox")

// Validate reports a missing URL, inconsistent TLS settings or an inbox prefix that is not a subject.
func (c BusConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("nats url is required"))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("nats tls cert and key must be given together"))
	}
	if c.Replicas != 0 && c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		errs = append(errs, fmt.Errorf("nats stream replicas %d: want 1, 3 or 5", c.Replicas))
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t\r\n") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		errs = append(errs, fmt.Errorf("nats inbox prefix %q: want subject tokens without wildcards, e.g. %s", p, UserInbox("planner")))
	}
	return errors.Join(errs...)
}

// Connect connects a service to NATS (reconnecting forever), makes sure the contract's
// streams exist and returns the connection and its JetStream.
func Connect(ctx context.Context, cfg BusConfig, name string, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), // NATS down at start: keep trying, as after a disconnect
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// Permission violations, slow consumers: in the service's log, not on bare stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logger.Error("nats error", "err", err, "subject", sub.Subject)
			} else {
				logger.Error("nats error", "err", err)
			}
		}),
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("nats nkey %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	// A service that starts while NATS restarts or a cluster elects its leaders waits for it;
	// one whose user may not read its replies stops at once.
	backoff := ExponentialBackoff(250*time.Millisecond, 10*time.Second)
	for attempt := uint64(1); ; attempt++ {
		var err error
		if nc.IsConnected() {
			err = CheckInbox(ctx, nc)
		}
		if errors.Is(err, ErrInboxRefused) {
			nc.Close()
			return nil, nil, fmt.Errorf("connect to nats: %w", err)
		}
		if err == nil {
			err = EnsureStreams(ctx, js, cfg.Replicas)
		}
		if err == nil {
			return nc, js, nil
		}
		wait := backoff(attempt)
		logger.Warn("nats streams not ready; retrying", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			nc.Close()
			return nil, nil, fmt.Errorf("ensure streams: %w (last: %v)", ctx.Err(), err)
		}
	}
}

// CheckInbox subscribes to a fresh reply subject of the connection and fails with
// ErrInboxRefused, naming the prefix, when the server refuses it (a permissions violation):
// the connection's inbox prefix is not its user's. Other errors (no connection, a timeout)
// say nothing about the permissions.
func CheckInbox(ctx context.Context, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("subscribe to reply inbox %s: %w", inbox, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("check reply inbox %s: %w", inbox, err)
	}
	// The server refuses a subscription before it answers the flush.
	if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), strconv.Quote(inbox)) {
		prefix := nc.Opts.InboxPrefix
		if prefix == "" {
			prefix = strings.TrimSuffix(nats.InboxPrefix, ".")
		}
		return fmt.Errorf("%w: this user may not subscribe to %s.>; set the inbox prefix (PATCHFLEET_NATS_INBOX) to the user's, %s in deployments/nats",
			ErrInboxRefused, prefix, UserInbox("<user>"))
	}
	return nil
}

// ReadyCheck reports whether the connection is up, for /readyz.
func ReadyCheck(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats %s", s)
		}
		return nil
	}
}
