package testfleet

import _ "embed"

// The advisory for the fix the repository serves (pf-demo and pf-libdemo
// 1.0 -> 1.1, CVE-2099-0001), in the formats advisory-ingest reads, so an
// end-to-end test can go from a published advisory to a patched host.
var (
	//go:embed testdata/osv/PFSA-2099-0001.json
	AdvisoryOSV []byte
	//go:embed testdata/debian/debian.json
	AdvisoryDebianTracker []byte
)

// Identifiers of the advisory in AdvisoryOSV and AdvisoryDebianTracker.
const (
	AdvisoryID  = "PFSA-2099-0001"
	AdvisoryCVE = "CVE-2099-0001"
)
