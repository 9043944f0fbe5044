package loadgen

import "testing"

// TestLoadCountLine: counts are listed largest first, equal counts by
// name, so two reports of the same run read the same.
func TestLoadCountLine(t *testing.T) {
	for _, tt := range []struct {
		in   map[string]uint64
		want string
	}{
		{nil, ""},
		{map[string]uint64{"reset": 1}, "reset: 1"},
		{map[string]uint64{"a": 1, "b": 3, "c": 2}, "b: 3, c: 2, a: 1"},
		{map[string]uint64{"timeout": 2, "eof": 2, "reset": 5, "dns": 2}, "reset: 5, dns: 2, eof: 2, timeout: 2"},
	} {
		if got := countLine(tt.in); got != tt.want {
			t.Errorf("countLine(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
