module github.com/patchfleet/patchfleet/tools

go 1.26.0

require golang.org/x/crypto v0.58.0

require github.com/spf13/cobra v1.10.2

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)

require (
	github.com/patchfleet/patchfleet/db v0.0.0
	github.com/patchfleet/patchfleet/events v0.0.0
	github.com/patchfleet/patchfleet/services/advisory-ingest v0.0.0
	github.com/patchfleet/patchfleet/services/executor v0.0.0
	github.com/patchfleet/patchfleet/services/inventory v0.0.0
	github.com/patchfleet/patchfleet/services/planner v0.0.0
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/patchfleet/patchfleet/events => ../events

replace github.com/patchfleet/patchfleet/db => ../db

replace github.com/patchfleet/patchfleet/services/advisory-ingest => ../services/advisory-ingest

replace github.com/patchfleet/patchfleet/services/planner => ../services/planner

replace github.com/patchfleet/patchfleet/services/executor => ../services/executor

replace github.com/patchfleet/patchfleet/services/inventory => ../services/inventory
