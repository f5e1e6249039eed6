package quantity

import "testing"

func TestParseAndResolve(t *testing.T) {
	tests := []struct {
		in        string
		total     int
		of, floor int
		wantErr   bool
	}{
		{"10%", 5, 1, 0, false},
		{"10%", 100, 10, 10, false},
		{"50%", 3, 2, 1, false},
		{"100%", 7, 7, 7, false},
		{"0%", 7, 0, 0, false},
		{"3", 2, 2, 3, false},
		{"3", 10, 3, 3, false},
		{" 25 % ", 8, 2, 2, false},
		{"101%", 1, 0, 0, true},
		{"-1", 1, 0, 0, true},
		{"ten", 1, 0, 0, true},
		{"", 1, 0, 0, true},
	}
	for _, tt := range tests {
		q, err := Parse(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if got := q.Of(tt.total); got != tt.of {
			t.Errorf("%q.Of(%d) = %d, want %d", tt.in, tt.total, got, tt.of)
		}
		if got := q.Floor(tt.total); got != tt.floor {
			t.Errorf("%q.Floor(%d) = %d, want %d", tt.in, tt.total, got, tt.floor)
		}
	}
}
