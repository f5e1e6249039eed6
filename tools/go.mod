module github.com/patchfleet/patchfleet/tools

go 1.26.8
