package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// Encode appends the data instead of marshalling the envelope whole: the bytes must be what
// json.Marshal of the envelope gives, and data that is not JSON must still be refused.
func TestEncodeIsTheMarshalledEnvelope(t *testing.T) {
	env, err := Wrap("id-1", HostDecommissioned{HostID: "web-1", Reason: "retired"}, Origin{Producer: "p", CorrelationID: "c", CausationID: "x"},
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Envelope{env, func() Envelope { e := env; e.CausationID = ""; return e }()} {
		m, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(e)
		if !bytes.Equal(m.Data, want) {
			t.Errorf("Encode:\n%s\nwant\n%s", m.Data, want)
		}
		back, err := DecodeEnvelope(m.Data)
		if err != nil || back.ID != e.ID || !bytes.Equal(back.Data, e.Data) {
			t.Errorf("decoded %+v, %v", back, err)
		}
	}
	for _, bad := range []string{``, `{"host_id":`, `{} {}`} {
		e := env
		e.Data = json.RawMessage(bad)
		if _, err := Encode(e); err == nil {
			t.Errorf("data %q encoded", bad)
		}
	}
}

// WrapEncode is Wrap then Encode: the same envelope and bytes, and Wrap's refusals.
func TestWrapEncodeIsWrapThenEncode(t *testing.T) {
	e, o, now := HostDecommissioned{HostID: "web-1", Reason: "retired"}, Origin{Producer: "p", CorrelationID: "c"}, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	env, msg, err := WrapEncode("id-1", e, o, now)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Wrap("id-1", e, o, now)
	wantMsg, _ := Encode(want)
	if !bytes.Equal(env.Data, want.Data) || env.ID != want.ID || !bytes.Equal(msg.Data, wantMsg.Data) || msg.Subject != wantMsg.Subject || msg.ID != "id-1" {
		t.Errorf("WrapEncode: %+v %s, want %+v %s", env, msg.Data, want, wantMsg.Data)
	}
	if _, _, err := WrapEncode("id-2", HostDecommissioned{}, o, now); err == nil {
		t.Error("an invalid event was encoded")
	}
}
