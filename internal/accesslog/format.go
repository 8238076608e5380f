// Package accesslog writes the proxy's access log: a line per request,
// in nginx's combined format followed by mattingctl's own fields, or as
// JSON. Lines are handed to a bounded queue and written by one goroutine,
// so that a slow disk drops lines, counted, rather than slowing requests.
package accesslog

import (
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"
)

// Record is what one line says about one request.
type Record struct {
	// Time is when the request arrived.
	Time time.Time
	// Client is the client's address as the server saw it (HOST:PORT);
	// the line shows the host.
	Client string
	// Method, Path (with the query, as the client sent it) and Protocol
	// ("HTTP/1.1", "HTTP/2.0") are the request line's.
	Method, Path, Protocol string
	// Referer and UserAgent are the request's headers; empty when absent.
	Referer, UserAgent string
	// Status is the code the client got: 499 when it went away first.
	Status int
	// BytesIn is the request body's bytes received, BytesOut the response
	// body's bytes sent.
	BytesIn, BytesOut int64
	// Duration is the time from the request's arrival to its answer,
	// Queued the part of it spent waiting for a replica with room.
	Duration, Queued time.Duration
	// Replica is the replica that answered, or was tried last; empty when
	// none was reached.
	Replica string
	// Attempts is how many replicas the request was sent to: 1, plus one
	// per retry; 0 when none was.
	Attempts int
}

// Format is how a Record is written.
type Format int

const (
	// Combined is nginx's combined format followed by bytes in, duration
	// in seconds, replica, attempts and time queued in seconds.
	Combined Format = iota
	// JSON is one object per line.
	JSON
)

// Formats are the names ParseFormat takes, the default first.
var Formats = []string{"combined", "json"}

// ParseFormat returns the format named s, which is one of Formats.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "combined":
		return Combined, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("%q is not combined or json", s)
}

// Append appends rec's line, newline included, to dst.
func (f Format) Append(dst []byte, rec *Record) []byte {
	if f == JSON {
		return appendJSON(dst, rec)
	}
	return appendCombined(dst, rec)
}

const combinedTime = "02/Jan/2006:15:04:05 -0700"

// appendCombined appends nginx's
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//
// and then bytes_in duration replica attempts queued, with the durations
// in seconds to the millisecond as nginx's $request_time. Strings are
// escaped as nginx does: " and \ and bytes outside printable ASCII as
// \xHH. An absent value is "-".
func appendCombined(b []byte, r *Record) []byte {
	b = append(b, clientHost(r.Client)...)
	b = append(b, " - - ["...)
	b = r.Time.AppendFormat(b, combinedTime)
	b = append(b, `] "`...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, r.Path)
	b = append(b, ' ')
	b = appendEscaped(b, r.Protocol)
	b = append(b, `" `...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, ` "`...)
	b = appendEscaped(b, orDash(r.Referer))
	b = append(b, `" "`...)
	b = appendEscaped(b, orDash(r.UserAgent))
	b = append(b, `" `...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, r.Duration.Seconds(), 'f', 3, 64)
	b = append(b, ' ')
	b = appendEscaped(b, orDash(r.Replica))
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, r.Queued.Seconds(), 'f', 3, 64)
	return append(b, '\n')
}

// jsonTime is RFC 3339 to the millisecond, as nginx's $time_iso8601 with
// milliseconds.
const jsonTime = "2006-01-02T15:04:05.000Z07:00"

// appendJSON appends one JSON object with the fields, in this order:
// time, client, method, path, protocol, status, bytes_in, bytes_out,
// duration_ms, replica, attempts, queued_ms, referer, user_agent.
func appendJSON(b []byte, r *Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, jsonTime)
	b = append(b, `","client":`...)
	b = appendJSONString(b, clientHost(r.Client))
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, r.Path)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, r.Protocol)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, r.Duration)
	b = append(b, `,"replica":`...)
	b = appendJSONString(b, orDash(r.Replica))
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"queued_ms":`...)
	b = appendMillis(b, r.Queued)
	b = append(b, `,"referer":`...)
	b = appendJSONString(b, r.Referer)
	b = append(b, `,"user_agent":`...)
	b = appendJSONString(b, r.UserAgent)
	return append(b, "}\n"...)
}

// appendMillis appends d in milliseconds to the microsecond.
func appendMillis(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', -1, 64)
}

// clientHost is the host of a HOST:PORT address, or the address whole
// when it is not one (a Unix socket's).
func clientHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return orDash(addr)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const hexDigits = "0123456789ABCDEF"

// appendEscaped appends s as nginx escapes variables in its logs: ", \
// and bytes outside printable ASCII as \xHH, so that a line stays one
// line and its quoted fields can be split on quotes.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// appendJSONString appends s as a JSON string; bytes that are not valid
// UTF-8 become U+FFFD, as encoding/json makes them.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line terminators to JavaScript.
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
