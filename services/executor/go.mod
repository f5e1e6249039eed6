module github.com/patchfleet/patchfleet/services/executor

go 1.26.8
