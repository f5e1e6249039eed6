module github.com/patchfleet/patchfleet/services/inventory

go 1.26.8
