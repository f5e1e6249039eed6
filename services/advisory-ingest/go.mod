module github.com/patchfleet/patchfleet/services/advisory-ingest

go 1.26.8
