package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mattingctl/mattingctl/balancer"
)

// inflightFlag is --max-inflight: a whole number, a fixed cap per replica
// (0: none), or auto, a cap each replica learns between the default
// bounds, or auto:MIN-MAX between those. It sets both fields, so that the
// last value given (the command line over a config file) decides.
type inflightFlag struct {
	fixed    *int
	adaptive *balancer.InflightBounds
}

// maxInflightBound is the highest upper bound auto takes: far past any
// model server's parallelism, within what the descriptor budget plans for.
const maxInflightBound = 1024

func (f inflightFlag) Set(s string) error {
	if rest, ok := strings.CutPrefix(s, auto); ok {
		bounds, err := parseInflightBounds(rest)
		if err != nil {
			return err
		}
		*f.fixed, *f.adaptive = 0, bounds
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return badValue(f.Type(), s)
	}
	if err := (intFlag{f.fixed, 0}).Set(strconv.Itoa(n)); err != nil {
		return err
	}
	*f.adaptive = balancer.InflightBounds{}
	return nil
}

// parseInflightBounds parses what follows auto: nothing, or :MIN-MAX.
func parseInflightBounds(s string) (balancer.InflightBounds, error) {
	if s == "" {
		return balancer.DefaultAdaptiveInflight, nil
	}
	lo, hi, ok := strings.Cut(strings.TrimPrefix(s, ":"), "-")
	minN, err1 := strconv.Atoi(lo)
	maxN, err2 := strconv.Atoi(hi)
	if !strings.HasPrefix(s, ":") || !ok || err1 != nil || err2 != nil {
		return balancer.InflightBounds{}, fmt.Errorf("want auto or auto:MIN-MAX such as auto:1-32, got %q", auto+s)
	}
	if minN < 1 || maxN < minN || maxN > maxInflightBound {
		return balancer.InflightBounds{}, fmt.Errorf("auto:%d-%d: want 1 <= MIN <= MAX <= %d, such as auto:1-32", minN, maxN, maxInflightBound)
	}
	return balancer.InflightBounds{Min: minN, Max: maxN}, nil
}

// String is the value as --max-inflight takes it: N, auto, or
// auto:MIN-MAX when the bounds are not the default.
func (f inflightFlag) String() string {
	if f.adaptive == nil || f.fixed == nil {
		return "0"
	}
	return formatInflight(*f.fixed, *f.adaptive)
}

// formatInflight writes a --max-inflight value.
func formatInflight(fixed int, adaptive balancer.InflightBounds) string {
	switch {
	case fixed > 0:
		return strconv.Itoa(fixed)
	case adaptive == balancer.DefaultAdaptiveInflight:
		return auto
	case adaptive.Max > 0:
		return fmt.Sprintf("%s:%d-%d", auto, adaptive.Min, adaptive.Max)
	}
	return strconv.Itoa(fixed)
}

func (f inflightFlag) Type() string { return "limit" }
