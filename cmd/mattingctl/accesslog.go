package main

import (
	"errors"

	"github.com/mattingctl/mattingctl/supervisor"
)

// accessLogFlag is --access-log: a path, - or off, which it holds as the
// empty string, the field's none; an empty value, as an unset shell
// variable gives, is refused rather than taken for off.
type accessLogFlag struct{ p *string }

func (f accessLogFlag) String() string {
	if f.p == nil || *f.p == "" {
		return supervisor.AccessLogOff
	}
	return *f.p
}

func (f accessLogFlag) Set(s string) error {
	switch s {
	case "":
		return errors.New("want a file, - for stdout, or off")
	case supervisor.AccessLogOff:
		s = ""
	}
	*f.p = s
	return nil
}

func (f accessLogFlag) Type() string { return "string" }
