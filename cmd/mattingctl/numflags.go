package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The flags below refuse a bad number when it is set, so that the error
// names the flag (pflag adds `invalid argument "-5s" for "--stop-timeout"
// flag`) or, from a config file, the file and line (applyConfig adds
// them). supervisor.Options checks the same bounds again for its other
// callers. A flag not given keeps its default; a zero given means what the
// flag's help says, or is refused.

// durationFlag is a duration flag that refuses negative values and, unless
// zero means something (zeroOK), zero.
type durationFlag struct {
	p      *time.Duration
	zeroOK bool
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return badValue(f.Type(), s)
	}
	switch {
	case d < 0:
		return fmt.Errorf("must not be negative, not %s", s)
	case d == 0 && !f.zeroOK:
		return errors.New("must be more than 0")
	}
	*f.p = d
	return nil
}

// String is "0" for zero, which help shows as no default (the flag's
// usage says what 0 means).
func (f durationFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return "0"
	}
	return f.p.String()
}

func (f durationFlag) Type() string { return "duration" }

// intFlag is a whole-number flag that refuses values below min; zero is
// allowed when min is 0, and then means what the flag's help says.
type intFlag struct {
	p   *int
	min int
}

func (f intFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return badValue(f.Type(), s)
	}
	switch {
	case n >= f.min:
	case f.min == 0:
		return fmt.Errorf("must not be negative, not %d", n)
	default:
		return fmt.Errorf("must be at least %d, not %d", f.min, n)
	}
	*f.p = n
	return nil
}

func (f intFlag) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.Itoa(*f.p)
}

func (f intFlag) Type() string { return "int" }

// positiveSize is a size flag that refuses 0, for limits where "no limit"
// is not safe.
type positiveSize struct{ sizeValue }

func (f *positiveSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("must be more than 0")
	}
	*f.p = n
	return nil
}

// weightsFlag is a comma-separated list of weights, each at least 1; given
// again, it adds to the list.
type weightsFlag struct {
	p   *[]int
	set bool
}

func (f *weightsFlag) Set(s string) error {
	var ws []int
	for _, part := range strings.Split(s, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return badValue("int", part)
		}
		if w < 1 {
			return fmt.Errorf("weight %d must be at least 1", w)
		}
		ws = append(ws, w)
	}
	if f.set {
		*f.p = append(*f.p, ws...)
	} else {
		*f.p, f.set = ws, true
	}
	return nil
}

func (f *weightsFlag) String() string {
	if f.p == nil {
		return ""
	}
	return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(*f.p)), ","), "[]")
}

func (f *weightsFlag) Type() string { return "ints" }
