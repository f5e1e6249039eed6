// Package quantity is a count of hosts written either as a number ("2") or as a percentage
// of a total ("10%"), as fleet policies write wave sizes and failure budgets.
package quantity

import (
	"fmt"
	"strconv"
	"strings"
)

// Q is a count or a percentage.
type Q struct {
	N       int  // the count, or the percentage when Percent
	Percent bool // N is a percentage of the total
}

// Parse reads "5" or "10%" (0–100%).
func Parse(s string) (Q, error) {
	s = strings.TrimSpace(s)
	num, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 0 {
		return Q{}, fmt.Errorf("%q: want a count (5) or a percentage (10%%)", s)
	}
	if pct && n > 100 {
		return Q{}, fmt.Errorf("%q: a percentage is at most 100%%", s)
	}
	return Q{N: n, Percent: pct}, nil
}

// Of resolves q against total. Percentages round up, so "10%" of 5 hosts is 1 host, not 0;
// a count is capped at total.
func (q Q) Of(total int) int {
	if total <= 0 {
		return 0
	}
	if !q.Percent {
		return min(q.N, total)
	}
	return (total*q.N + 99) / 100
}

// Floor resolves q against total rounding a percentage down: a failure budget of 10% of 5
// hosts tolerates no failure rather than one.
func (q Q) Floor(total int) int {
	if !q.Percent {
		return q.N
	}
	return total * q.N / 100
}

func (q Q) String() string {
	if q.Percent {
		return strconv.Itoa(q.N) + "%"
	}
	return strconv.Itoa(q.N)
}
