module github.com/patchfleet/patchfleet/services/inventory

go 1.26.0

require (
	github.com/patchfleet/patchfleet/db v0.0.0
	github.com/patchfleet/patchfleet/events v0.0.0
)

replace github.com/patchfleet/patchfleet/events => ../../events

replace github.com/patchfleet/patchfleet/db => ../../db
