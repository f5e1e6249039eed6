// Package revision decides what an incoming advisory means against what is stored: nothing
// (unchanged, or older than what we have), a new revision to publish, or a withdrawal to
// announce. It is pure: the caller reads the stored state and writes the outcome.
package revision

import "time"

// Stored is what is kept of an advisory's current revision.
type Stored struct {
	Revision  int
	Hash      string // advisory.ContentHash
	Modified  time.Time
	Withdrawn bool
}

// Incoming is an advisory as just read.
type Incoming struct {
	ID        string
	Hash      string
	Modified  time.Time
	Withdrawn bool
}

// Kind is what an incoming advisory leads to.
type Kind int

const (
	// Unchanged: same content as stored (Modified alone does not count), or a withdrawn
	// advisory that stays withdrawn. Nothing is written.
	Unchanged Kind = iota
	// Stale: different content, but older than the stored revision (a feed lagging behind
	// another). Nothing is written.
	Stale
	// Publish: a new revision, announced by SecurityAdvisoryPublished. Also the way back
	// from a withdrawal.
	Publish
	// Withdraw: a new revision that withdraws the advisory, announced by AdvisoryWithdrawn.
	Withdraw
)

func (k Kind) String() string {
	switch k {
	case Unchanged:
		return "unchanged"
	case Stale:
		return "stale"
	case Publish:
		return "published"
	case Withdraw:
		return "withdrawn"
	}
	return "unknown"
}

// Decision is the outcome for one incoming advisory; Revision is the new revision number
// for Publish and Withdraw, the stored one otherwise.
type Decision struct {
	Kind     Kind
	Revision int
}

// Changed reports whether the decision writes a revision.
func (d Decision) Changed() bool { return d.Kind == Publish || d.Kind == Withdraw }

// Decide compares one incoming advisory with its stored state (nil: never seen).
func Decide(stored *Stored, in Incoming) Decision {
	if stored == nil {
		// An advisory first seen withdrawn is still announced, as revision 1: whoever heard
		// of it elsewhere learns it is gone.
		if in.Withdrawn {
			return Decision{Withdraw, 1}
		}
		return Decision{Publish, 1}
	}
	switch {
	case stored.Hash == in.Hash:
		return Decision{Unchanged, stored.Revision}
	case in.Modified.Before(stored.Modified):
		return Decision{Stale, stored.Revision}
	case in.Withdrawn && stored.Withdrawn:
		// Edits to a withdrawn advisory change nothing for anyone acting on it.
		return Decision{Unchanged, stored.Revision}
	case in.Withdrawn:
		return Decision{Withdraw, stored.Revision + 1}
	}
	return Decision{Publish, stored.Revision + 1}
}

// Plan decides a batch in order. stored holds the state of the batch's advisories that are
// stored (by id); an advisory appearing twice in the batch is decided the second time
// against the outcome of the first. stored is not modified.
func Plan(stored map[string]Stored, batch []Incoming) []Decision {
	seen := map[string]Stored{}
	out := make([]Decision, len(batch))
	for i, in := range batch {
		cur, ok := seen[in.ID]
		if !ok {
			cur, ok = stored[in.ID]
		}
		var d Decision
		if ok {
			d = Decide(&cur, in)
		} else {
			d = Decide(nil, in)
		}
		out[i] = d
		if d.Changed() {
			seen[in.ID] = Stored{Revision: d.Revision, Hash: in.Hash, Modified: in.Modified, Withdrawn: in.Withdrawn}
		}
	}
	return out
}
