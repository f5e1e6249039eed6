package hostfacts

import (
	"hash/maphash"
	"slices"
	"sync"
)

// Parser parses reports like Parse and remembers the package lists it read last, by
// content. Hosts built from one image list the same packages, so a scan round of a fleet
// validates each distinct list once rather than once per host. Safe for concurrent use.
//
// The Packages of the facts it returns may be shared with other results: read them, never
// change them in place (appending is safe).
type Parser struct {
	mu    sync.Mutex
	seed  maphash.Seed
	max   int
	lists map[uint64]*knownList
	clock uint64 // advances on every use; an entry's used is its last
}

type knownList struct {
	lines []string // the section's body, compared in full on a hit
	pkgs  []Package
	used  uint64
}

// NewParser returns a parser remembering up to lists package lists. A list takes about
// twice its report's size (the report's text and the parsed packages).
func NewParser(lists int) *Parser {
	return &Parser{seed: maphash.MakeSeed(), max: max(lists, 1), lists: map[uint64]*knownList{}}
}

func (m *Parser) key(body []line) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	for _, l := range body {
		h.WriteString(l.text)
		h.WriteByte('\n')
	}
	return h.Sum64()
}

// recall returns the packages of a list read before with exactly these lines (k is their
// key), shared.
func (m *Parser) recall(k uint64, body []line) ([]Package, bool) {
	m.mu.Lock()
	e := m.lists[k]
	if e != nil {
		m.clock++
		e.used = m.clock
	}
	m.mu.Unlock()
	if e == nil || len(e.lines) != len(body) {
		return nil, false
	}
	for i, l := range body {
		if e.lines[i] != l.text {
			return nil, false
		}
	}
	return slices.Clip(e.pkgs), true
}

// remember keeps the packages parsed from body (k is its key), dropping the least recently
// used list when full.
func (m *Parser) remember(k uint64, body []line, pkgs []Package) {
	e := &knownList{lines: make([]string, len(body)), pkgs: slices.Clone(pkgs)}
	for i, l := range body {
		e.lines[i] = l.text
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	e.used = m.clock
	m.lists[k] = e
	for len(m.lists) > m.max {
		var oldest uint64
		at := uint64(0)
		for k, e := range m.lists {
			if at == 0 || e.used < at {
				oldest, at = k, e.used
			}
		}
		delete(m.lists, oldest)
	}
}
