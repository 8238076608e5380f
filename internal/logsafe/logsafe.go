// Package logsafe keeps each of mattingctl's log lines one line. hclog
// writes a value that holds a newline as a block of lines, and a message
// as it is: a request's path, which the proxy logs decoded, would let a
// client forge log lines with %0a in a URL, and an error that names a file
// could do the same. Wrap quotes such values, as hclog.Quote does, so that
// their control characters are escaped in the text format (the JSON format
// escapes them anyway).
package logsafe

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Wrap returns a logger that logs to l with every message and value made
// one line. A nil l is returned as it is.
func Wrap(l hclog.Logger) hclog.Logger {
	if l == nil {
		return nil
	}
	if _, ok := l.(*logger); ok {
		return l
	}
	return &logger{l}
}

// logger is an hclog.Logger whose messages and values are made one line
// before they reach the embedded one; the methods it does not override
// (levels, names) write nothing.
type logger struct{ hclog.Logger }

var _ hclog.Logger = (*logger)(nil)

func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, Line(msg), clean(args)...)
}
func (l *logger) Trace(msg string, args ...any) { l.Logger.Trace(Line(msg), clean(args)...) }
func (l *logger) Debug(msg string, args ...any) { l.Logger.Debug(Line(msg), clean(args)...) }
func (l *logger) Info(msg string, args ...any)  { l.Logger.Info(Line(msg), clean(args)...) }
func (l *logger) Warn(msg string, args ...any)  { l.Logger.Warn(Line(msg), clean(args)...) }
func (l *logger) Error(msg string, args ...any) { l.Logger.Error(Line(msg), clean(args)...) }

func (l *logger) With(args ...any) hclog.Logger { return &logger{l.Logger.With(clean(args)...)} }
func (l *logger) Named(name string) hclog.Logger {
	return &logger{l.Logger.Named(Line(name))}
}
func (l *logger) ResetNamed(name string) hclog.Logger {
	return &logger{l.Logger.ResetNamed(Line(name))}
}

// StandardLogger returns a *log.Logger writing through StandardWriter.
func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose every Write is one line of the
// log, as hclog's own is, with any newline inside escaped: net/http's
// server writes its errors there.
func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return lineWriter{l.Logger.StandardWriter(opts)}
}

type lineWriter struct{ w io.Writer }

func (w lineWriter) Write(p []byte) (int, error) {
	s := strings.TrimSuffix(string(p), "\n")
	if _, err := w.w.Write([]byte(Line(s) + "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}

// clean returns args with each value that would span lines quoted; keys
// are left alone (mattingctl's are constants). args is not changed.
func clean(args []any) []any {
	var out []any
	for i := 1; i < len(args); i += 2 {
		v, changed := cleanValue(args[i])
		if !changed {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = v
	}
	if out == nil {
		return args
	}
	return out
}

// cleanValue quotes v if, as hclog renders it, it holds a line break.
func cleanValue(v any) (any, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case error:
		s = x.Error()
	case hclog.Format:
		if len(x) == 0 {
			return v, false
		}
		f, _ := x[0].(string)
		s = fmt.Sprintf(f, x[1:]...)
	case fmt.Stringer:
		s = x.String()
	default:
		return v, false
	}
	if !strings.ContainsAny(s, "\n\r") {
		return v, false
	}
	return hclog.Quote(s), true
}

const hexDigits = "0123456789abcdef"

// Line returns s with its control characters escaped (\n, \r, \t; others
// as \xHH), so that it is one line of plain text, for messages and names,
// which hclog writes as they are.
func Line(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
