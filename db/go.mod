module github.com/patchfleet/patchfleet/db

go 1.26.8
