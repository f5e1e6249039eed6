// Package freeport hands out loopback TCP ports for servers that tests and local fleets
// start as separate processes, which bind the port some time after it was chosen.
//
// A port from the kernel's ephemeral range (bind to :0, close) can be taken in that time
// by any outgoing connection on the machine, and a busy fleet makes thousands of them: the
// server then fails to start. Ports here come from below the ephemeral range, where the
// kernel never picks one on its own, at random so that test processes running side by
// side rarely try the same one, and never twice from one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the first port handed out: well above the ports system services use.
const lowest = 10000

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Get returns a loopback TCP port that is outside the ephemeral range, was free a moment
// ago and was not returned before by this process.
func Get() (int, error) {
	return get(lowest, ephemeralLow()-1)
}

func get(lowest, highest int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	n := highest - lowest + 1
	start := rand.IntN(n)
	for i := range n {
		port := lowest + (start+i)%n
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		handed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 between %d and %d", lowest, highest)
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's default when it
// cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= lowest+1000 {
		return 32768
	}
	return low
}

// For is Get for tests: it fails tb when no port is free.
func For(tb testing.TB) int {
	tb.Helper()
	p, err := Get()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
