package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/internal/bytesize"
)

// auto is the default `up --help` shows for the flags whose default is
// decided at start, from other flags or from the machine (--base-port from
// --port, --queue-timeout from --upstream-timeout, --max-conns from ulimit
// -n, --max-buffer from the RAM, --buffer-dir and --admin from the instance),
// and the value that asks for it again, on the command line or in a config
// file. Each flag's help says what auto is.
const auto = "auto"

// autoInt is a whole-number flag where auto is 0: the value derived at
// start, as the field's 0 is. A negative number is refused here when
// noNegative is set; else the supervisor refuses it, with what 0 means.
type autoInt struct {
	p          *int
	noNegative bool
}

func (f autoInt) Set(s string) error {
	if s == auto {
		*f.p = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return badValueOr(f.Type(), s, auto)
	}
	if f.noNegative {
		return intFlag{f.p, 0}.Set(s)
	}
	*f.p = n
	return nil
}

func (f autoInt) String() string {
	if f.p == nil || *f.p == 0 {
		return auto
	}
	return strconv.Itoa(*f.p)
}

func (f autoInt) Type() string { return "int" }

// autoDuration is a duration flag, 0 or more, where auto is nil: the field
// then follows another (--queue-timeout follows --upstream-timeout).
type autoDuration struct{ p **time.Duration }

func (f autoDuration) Set(s string) error {
	if s == auto {
		*f.p = nil
		return nil
	}
	if _, err := time.ParseDuration(s); err != nil {
		return badValueOr(f.Type(), s, auto)
	}
	var d time.Duration
	if err := (durationFlag{&d, true}).Set(s); err != nil {
		return err
	}
	*f.p = &d
	return nil
}

func (f autoDuration) String() string {
	if f.p == nil || *f.p == nil {
		return auto
	}
	return durationFlag{*f.p, true}.String()
}

func (f autoDuration) Type() string { return "duration" }

// autoSize is a size flag, 0 or more, where auto is the default it was
// registered with, decided from the machine (--max-buffer's quarter of the
// RAM); 0 means what the field's 0 means.
type autoSize struct {
	p    *int64
	auto int64
}

func (f *autoSize) Set(s string) error {
	n, isAuto, err := parseAutoSize(s, f.Type())
	switch {
	case err != nil:
		return err
	case isAuto:
		*f.p = f.auto
	default:
		*f.p = n
	}
	return nil
}

// parseAutoSize reads a size flag's value: auto, or a size of 0 or more.
// A value that is neither is refused naming both forms; a negative size
// with parseSize's own message.
func parseAutoSize(s, typ string) (n int64, isAuto bool, err error) {
	if s == auto {
		return 0, true, nil
	}
	n, err = parseSize(s)
	if err != nil && !strings.HasPrefix(strings.TrimSpace(s), "-") {
		return 0, false, badValueOr(typ, s, auto)
	}
	return n, false, err
}

func (f *autoSize) String() string {
	switch {
	case f.p == nil || *f.p == f.auto:
		return auto
	case *f.p == 0:
		return "0"
	}
	return bytesize.Format(*f.p)
}

func (f *autoSize) Type() string { return "size" }

// autoSizeOf is a size flag, 0 or more, where auto is nil: the field
// then follows others (--max-client-buffer follows --max-buffer and
// --max-disk-buffer).
type autoSizeOf struct{ p **int64 }

func (f autoSizeOf) Set(s string) error {
	n, isAuto, err := parseAutoSize(s, f.Type())
	switch {
	case err != nil:
		return err
	case isAuto:
		*f.p = nil
	default:
		*f.p = &n
	}
	return nil
}

func (f autoSizeOf) String() string {
	switch {
	case f.p == nil || *f.p == nil:
		return auto
	case **f.p == 0:
		return "0"
	}
	return bytesize.Format(**f.p)
}

func (f autoSizeOf) Type() string { return "size" }

// autoString is a string flag where auto, or empty, is the empty string:
// the value derived at start. Its type names what it holds (dir, address),
// which help shows, with the default auto unquoted as the other autos.
type autoString struct {
	p   *string
	typ string
}

func (f autoString) Set(s string) error {
	if s == auto {
		s = ""
	}
	*f.p = s
	return nil
}

func (f autoString) String() string {
	if f.p == nil || *f.p == "" {
		return auto
	}
	return *f.p
}

func (f autoString) Type() string { return f.typ }
