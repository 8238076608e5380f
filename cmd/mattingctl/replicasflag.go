package main

import (
	"fmt"
	"strconv"
	"strings"
)

// replicasFlag is --replicas: N, a fixed count, or MIN:MAX, a count the
// autoscaler keeps between those, starting at MIN. It sets both fields, so
// that the last value given (the command line over a config file) decides.
type replicasFlag struct {
	n, max *int
}

func (f replicasFlag) Set(s string) error {
	lo, hi, ranged := strings.Cut(s, ":")
	if !ranged {
		if _, err := strconv.Atoi(s); err != nil {
			return badValue(f.Type(), s)
		}
		if err := (intFlag{f.n, 1}).Set(s); err != nil {
			return err
		}
		*f.max = 0
		return nil
	}
	minN, err1 := strconv.Atoi(lo)
	maxN, err2 := strconv.Atoi(hi)
	switch {
	case err1 != nil || err2 != nil:
		return badValue(f.Type(), s)
	case minN < 1:
		return fmt.Errorf("MIN must be at least 1, such as 1:%d", max(maxN, 1))
	case maxN < minN:
		return fmt.Errorf("MAX must be at least MIN, such as %d:%d", min(minN, maxN), max(minN, maxN))
	}
	*f.n, *f.max = minN, maxN
	return nil
}

// String is the value as --replicas takes it.
func (f replicasFlag) String() string {
	if f.n == nil || f.max == nil {
		return "1"
	}
	if *f.max > 0 {
		return fmt.Sprintf("%d:%d", *f.n, *f.max)
	}
	return strconv.Itoa(*f.n)
}

func (f replicasFlag) Type() string { return "count" }
