package main

import "errors"

// accessLogFlag is --access-log: a path, - or off; an empty value, as an
// unset shell variable gives, is refused rather than taken for off.
type accessLogFlag struct{ p *string }

func (f accessLogFlag) String() string {
	if f.p == nil {
		return ""
	}
	return *f.p
}

func (f accessLogFlag) Set(s string) error {
	if s == "" {
		return errors.New("want a file, - for stdout, or off")
	}
	*f.p = s
	return nil
}

func (f accessLogFlag) Type() string { return "string" }
