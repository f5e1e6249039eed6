package fleetsim

import _ "embed"

// AdvisoryOSV is an OSV advisory for the simulated repository's OpenSSL fix (openssl and
// libssl3 3.0.19-1~deb12u3 in DefaultUpdates), which exposes every host of every default
// image: what a whole-system test or benchmark publishes to start a rollout on fleetsim hosts.
//
//go:embed testdata/osv/PFSA-2099-0100.json
var AdvisoryOSV []byte

// AdvisoryID is the id of AdvisoryOSV.
const AdvisoryID = "PFSA-2099-0100"
