// Package replace performs jobs of strategy replace through provider hooks.
package replace

import "errors"

// Config names the provider's commands.
type Config struct {
	Provision, Switch, Retire []string
}

// Validate checks the commands are set.
func (c Config) Validate() error {
	if len(c.Provision) == 0 || len(c.Switch) == 0 || len(c.Retire) == 0 {
		return errors.New("replace provider: provision, switch and retire commands are required")
	}
	return nil
}

// Provider runs the hooks.
type Provider struct{ Cfg Config }
