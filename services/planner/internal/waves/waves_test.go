package waves

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/patchfleet/patchfleet/services/planner/internal/quantity"
)

func hosts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[n-1-i] = fmt.Sprintf("h%02d", i) // reversed: Split must order them
	}
	return out
}

func sizes(ws [][]string) []int {
	out := []int{}
	for _, w := range ws {
		out = append(out, len(w))
	}
	return out
}

func q(ss ...string) []quantity.Q {
	var out []quantity.Q
	for _, s := range ss {
		v, err := quantity.Parse(s)
		if err != nil {
			panic(err)
		}
		out = append(out, v)
	}
	return out
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		canary int
		marks  []quantity.Q
		want   []int
	}{
		{"product example on 20", 20, 1, q("10%", "50%", "100%"), []int{1, 1, 8, 10}},
		{"product example on 3", 3, 1, q("10%", "50%", "100%"), []int{1, 1, 1}},
		{"one host", 1, 1, q("10%", "50%", "100%"), []int{1}},
		{"no canary", 10, 0, q("50%"), []int{5, 5}},
		{"canary larger than fleet", 2, 5, q("100%"), []int{2}},
		{"counts", 30, 2, q("5", "15"), []int{2, 3, 10, 15}},
		{"marks stop short: the rest is a last wave", 10, 1, q("20%"), []int{1, 1, 8}},
		{"no marks", 4, 1, nil, []int{1, 3}},
		{"empty", 0, 1, q("100%"), []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := Split(hosts(tt.n), tt.canary, tt.marks)
			if got := sizes(ws); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("sizes = %v, want %v", got, tt.want)
			}
			seen := map[string]bool{}
			prev := ""
			for _, w := range ws {
				for _, h := range w {
					if seen[h] || h <= prev {
						t.Fatalf("host %s repeated or out of order", h)
					}
					seen[h], prev = true, h
				}
			}
			if len(seen) != tt.n {
				t.Fatalf("%d hosts in waves, want %d", len(seen), tt.n)
			}
		})
	}
}

func TestSplitDeterministicAndDeduplicated(t *testing.T) {
	a := Split([]string{"c", "a", "b", "a"}, 1, q("50%"))
	b := Split([]string{"b", "c", "a"}, 1, q("50%"))
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(a, [][]string{{"a"}, {"b"}, {"c"}}) {
		t.Fatalf("Split = %v and %v", a, b)
	}
	if got := Flatten(a); got["c"] != 2 || got["a"] != 0 {
		t.Fatalf("Flatten = %v", got)
	}
}
