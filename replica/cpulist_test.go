package replica

import "testing"

func TestFormatCPUs(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{nil, ""},
		{[]int{3}, "3"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{6, 0, 1, 2, 3}, "0-3,6"},
		{[]int{0, 2, 4, 5}, "0,2,4-5"},
		{[]int{1, 1, 2}, "1-2"},
	} {
		if got := FormatCPUs(tc.cpus); got != tc.want {
			t.Errorf("FormatCPUs(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
	}
}
