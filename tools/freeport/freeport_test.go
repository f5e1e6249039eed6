package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestGetHandsOutDistinctBindablePortsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 200 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowest || p >= low {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, low)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		l.Close()
	}
}

func TestGetSkipsPortsInUseAndPortsHandedOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	if got, err := get(p, p); err == nil {
		t.Fatalf("port %d in use handed out as %d", p, got)
	}
	l.Close()
	if got, err := get(p, p); err != nil || got != p {
		t.Fatalf("free port %d: got %d, %v", p, got, err)
	}
	if got, err := get(p, p); err == nil {
		t.Fatalf("port %d handed out twice (%d)", p, got)
	}
}
