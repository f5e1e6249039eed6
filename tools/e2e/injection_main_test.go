//go:build !e2e

package e2e

import (
	"testing"

	"github.com/patchfleet/patchfleet/db/pgtest"
)

// TestMain gives the tests that need PostgreSQL a throwaway cluster (the e2e build has its own).
func TestMain(m *testing.M) { pgtest.Main(m) }
