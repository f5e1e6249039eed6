module github.com/patchfleet/patchfleet/services/inventory

go 1.26.0

require github.com/patchfleet/patchfleet/events v0.0.0-00010101000000-000000000000

replace github.com/patchfleet/patchfleet/events => ../../events
