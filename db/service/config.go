package service

import (
	"errors"

	"github.com/patchfleet/patchfleet/events"
	"github.com/patchfleet/patchfleet/events/ops"
)

// Common is the configuration every service reads from the same environment variables.
type Common struct {
	Bus         events.BusConfig
	DatabaseURL string
	HTTPAddr    string
}

// Validate names each missing or wrong setting.
func (c Common) Validate() error {
	var errs []error
	if err := c.Bus.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("PATCHFLEET_DATABASE_URL is required"))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("PATCHFLEET_HTTP_ADDR is required"))
	}
	return errors.Join(errs...)
}

// CommonFromEnv reads the shared variables:
//
//	PATCHFLEET_NATS_URL        nats://127.0.0.1:4222 (comma-separated for a cluster)
//	PATCHFLEET_NATS_CREDS      credentials file (JWT + NKEY seed)
//	PATCHFLEET_NATS_NKEY       NKEY seed file
//	PATCHFLEET_NATS_USER, PATCHFLEET_NATS_PASSWORD[_FILE]
//	PATCHFLEET_NATS_CA, PATCHFLEET_NATS_CERT, PATCHFLEET_NATS_KEY   TLS
//	PATCHFLEET_NATS_REPLICAS   stream replicas (1, or 3 on a cluster)
//	PATCHFLEET_NATS_INBOX      reply subject prefix (default _INBOX_<service>: deployments/nats lets
//	                           each user read replies under _INBOX_<user> only)
//	PATCHFLEET_DATABASE_URL[_FILE]  postgres://… (a secret: it may hold a password)
//	PATCHFLEET_HTTP_ADDR       operations and API address
func CommonFromEnv(e *ops.Env, defaultHTTPAddr string) Common {
	return Common{
		Bus: events.BusConfig{
			URL:         e.String("PATCHFLEET_NATS_URL", "nats://127.0.0.1:4222"),
			CredsFile:   e.String("PATCHFLEET_NATS_CREDS", ""),
			NKeyFile:    e.String("PATCHFLEET_NATS_NKEY", ""),
			User:        e.String("PATCHFLEET_NATS_USER", ""),
			Password:    e.Secret("PATCHFLEET_NATS_PASSWORD"),
			CAFile:      e.String("PATCHFLEET_NATS_CA", ""),
			CertFile:    e.String("PATCHFLEET_NATS_CERT", ""),
			KeyFile:     e.String("PATCHFLEET_NATS_KEY", ""),
			Replicas:    e.Int("PATCHFLEET_NATS_REPLICAS", 1),
			InboxPrefix: e.String("PATCHFLEET_NATS_INBOX", ""),
		},
		DatabaseURL: e.Secret("PATCHFLEET_DATABASE_URL"),
		HTTPAddr:    e.String("PATCHFLEET_HTTP_ADDR", defaultHTTPAddr),
	}
}
