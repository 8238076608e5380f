package main

import (
	"fmt"
	"slices"
	"strings"
)

// choiceFlag is a string flag that takes one of a few words, refused when
// set otherwise, so that the error names the flag or the config file's
// line.
type choiceFlag struct {
	p       *string
	choices []string
}

func (f choiceFlag) Set(s string) error {
	if !slices.Contains(f.choices, s) {
		return fmt.Errorf("want %s, got %q", strings.Join(f.choices, " or "), s)
	}
	*f.p = s
	return nil
}

func (f choiceFlag) String() string {
	if f.p == nil {
		return ""
	}
	return *f.p
}

func (f choiceFlag) Type() string { return "string" }
