package bytesize

import "testing"

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 1000: "1000", 1 << 10: "1KiB", 50 << 20: "50MiB", 10 << 30: "10GiB",
		3 << 29: "1536MiB", 1<<20 + 1: "1048577",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
