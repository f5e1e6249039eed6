package query

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// An answer decodes as encoding/json decodes it, where the two JSON implementations differ
// by default too: keys matched without regard to case, invalid UTF-8 replaced, duplicate
// keys taken last.
func TestDecodeAnswerIsEncodingJSON(t *testing.T) {
	for _, data := range []string{
		`{"groups":[{"os":{"id":"debian","version_id":"12"},"packages":[{"name":"libssl3","installed":"3.0.11-1","source_name":"openssl","source_version":"3.0.11-1","fixed":"3.0.13-1"}],"fleets":[{"fleet":"web","host_ids":["a","b"]}]}],"next_cursor":"c1"}`,
		`{"NEXT_CURSOR":"c2","Hosts":[{"HOST_ID":"x"}]}`,
		"{\"next_cursor\":\"bad \xff byte\"}",
		`{"next_cursor":"first","next_cursor":"last"}`,
	} {
		var want, got ExposureResponse
		if err := json.Unmarshal([]byte(data), &want); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if err := decodeAnswer([]byte(data), &got); err != nil {
			t.Fatalf("decodeAnswer(%s): %v", data, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeAnswer(%s) = %+v, want %+v", data, got, want)
		}
	}
}

// BenchmarkDecodeExposurePage decodes a grouped exposure page of 50,000 hosts (500 groups
// of 100), as the planner reads the inventory's answer.
func BenchmarkDecodeExposurePage(b *testing.B) {
	var page ExposureResponse
	for g := range 500 {
		ids := make([]string, 100)
		for i := range ids {
			ids[i] = fmt.Sprintf("host-%06d", g*100+i)
		}
		page.Groups = append(page.Groups, ExposureGroup{
			Packages: []ExposedPackage{{Name: "libssl3", Installed: "3.0.11-1~deb12u2", SourceName: "openssl",
				SourceVersion: "3.0.11-1~deb12u2", Fixed: "3.0.13-1~deb12u1"}},
			Fleets: []FleetHosts{{Fleet: "web", HostIDs: ids}},
		})
	}
	data, err := json.Marshal(page)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var out ExposureResponse
		if err := decodeAnswer(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}
