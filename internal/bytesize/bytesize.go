// Package bytesize writes byte sizes as mattingctl's size flags take
// them (50MiB, 10GiB), so that a value shown (a default in --help, a
// setting in status or a reload's change) can be given back as shown.
package bytesize

import "strconv"

// Format writes n in the largest binary unit that divides it, else in
// bytes: 50MiB, 1GiB, 1000.
func Format(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
