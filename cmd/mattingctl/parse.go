package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/internal/bytesize"
	"github.com/mattingctl/mattingctl/internal/control"
)

// parseSize parses a byte size such as "50MiB", "50m", "1g", "512k" or
// "1048576". Suffixes are binary (k = KiB), as nginx reads them.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err == nil && n < 0 {
		return 0, fmt.Errorf("must not be negative, not %s", s)
	}
	if err != nil || n > (1<<62)/mult {
		return 0, badValue("size", s)
	}
	return n * mult, nil
}

// sizeValue is a flag holding a byte size such as 50MiB.
type sizeValue struct{ p *int64 }

func (v *sizeValue) String() string {
	if v.p == nil || *v.p == 0 {
		return ""
	}
	return bytesize.Format(*v.p)
}

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func (v *sizeValue) Type() string { return "size" }

// parseCount parses a replica count for scale: a whole number, at least
// 1, refused below in the words of the instance and its dashboard
// (control.CheckReplicaCount).
func parseCount(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("replica count %q is not a whole number", s)
	}
	if err := control.CheckReplicaCount(n); err != nil {
		return 0, err
	}
	return n, nil
}
