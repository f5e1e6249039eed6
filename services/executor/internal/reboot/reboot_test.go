package reboot

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	down := errors.New("connection refused")
	fatal := errors.New("host key mismatch")
	b := Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}
	tests := []struct {
		name    string
		answers []any // boot id or error, one per probe; the last repeats
		want    string
		wantErr error
	}{
		{"old id, then down, then a new id", []any{"old", down, down, "new"}, "new", nil},
		{"never comes back", []any{down}, "", ErrTimeout},
		{"answers with the old id forever: not rebooted", []any{"old"}, "", ErrTimeout},
		{"fatal error stops at once", []any{down, fatal}, "", fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			probe := func(context.Context) (string, error) {
				a := tt.answers[min(i, len(tt.answers)-1)]
				i++
				if err, ok := a.(error); ok {
					return "", err
				}
				return a.(string), nil
			}
			got, err := Wait(context.Background(), probe, "old", time.Now().Add(100*time.Millisecond), b, func(err error) bool { return err == fatal })
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("Wait = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
