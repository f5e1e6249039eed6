// Package e2e holds end-to-end tests against real hosts from testfleet; they
// need root and the e2e build tag: go test -tags e2e ./e2e/
package e2e
