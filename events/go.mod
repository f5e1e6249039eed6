module github.com/patchfleet/patchfleet/events

go 1.26.8
