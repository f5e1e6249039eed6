module github.com/patchfleet/patchfleet/services/planner

go 1.26.8
