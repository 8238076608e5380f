package accesslog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var sample = Record{
	Time:      time.Date(2025, 10, 10, 13, 55, 36, 123456789, time.FixedZone("", -7*3600)),
	Client:    "192.0.2.7:51234",
	Method:    "POST",
	Path:      "/predict?model=small&n=2",
	Protocol:  "HTTP/1.1",
	Referer:   "http://example.com/",
	UserAgent: "curl/8.5.0",
	Status:    200,
	BytesIn:   220456,
	BytesOut:  1234,
	Duration:  153204 * time.Microsecond,
	Queued:    4020 * time.Microsecond,
	Replica:   "replica-2",
	Attempts:  2,
}

func TestFormatGolden(t *testing.T) {
	rejected := Record{
		Time:     sample.Time,
		Client:   "[::1]:40000",
		Method:   "GET",
		Path:     "/",
		Protocol: "HTTP/2.0",
		Status:   503,
		BytesOut: 61,
		Duration: 1500 * time.Microsecond,
		Queued:   1500 * time.Microsecond,
	}
	for _, tt := range []struct {
		name   string
		format Format
		rec    Record
		want   string
	}{
		{"combined", Combined, sample,
			`192.0.2.7 - - [10/Oct/2025:13:55:36 -0700] "POST /predict?model=small&n=2 HTTP/1.1" 200 1234 "http://example.com/" "curl/8.5.0" 220456 0.153 replica-2 2 0.004` + "\n"},
		{"combined, no replica reached", Combined, rejected,
			`::1 - - [10/Oct/2025:13:55:36 -0700] "GET / HTTP/2.0" 503 61 "-" "-" 0 0.002 - 0 0.002` + "\n"},
		{"json", JSON, sample,
			`{"time":"2025-10-10T13:55:36.123-07:00","client":"192.0.2.7","method":"POST","path":"/predict?model=small&n=2","protocol":"HTTP/1.1","status":200,"bytes_in":220456,"bytes_out":1234,"duration_ms":153.204,"replica":"replica-2","attempts":2,"queued_ms":4.02,"referer":"http://example.com/","user_agent":"curl/8.5.0"}` + "\n"},
		{"json, no replica reached", JSON, rejected,
			`{"time":"2025-10-10T13:55:36.123-07:00","client":"::1","method":"GET","path":"/","protocol":"HTTP/2.0","status":503,"bytes_in":0,"bytes_out":61,"duration_ms":1.5,"replica":"-","attempts":0,"queued_ms":1.5,"referer":"","user_agent":""}` + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.format.Append(nil, &tt.rec)); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestJSONFields checks that a line parses, with every documented field,
// and that no client-controlled text can break it: quotes, newlines,
// control bytes and invalid UTF-8 in the path and headers.
func TestJSONFields(t *testing.T) {
	rec := sample
	rec.Path = "/a\"b\\c\nd\x01e\xffé\u2028"
	rec.UserAgent = "ua\r\n{\"x\":1}"
	line := JSON.Append(nil, &rec)
	if n := strings.Count(string(line), "\n"); n != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("want one line ending in a newline, got %d newlines: %q", n, line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("line does not parse: %v\n%s", err, line)
	}
	want := map[string]any{
		"time": "2025-10-10T13:55:36.123-07:00", "client": "192.0.2.7", "method": "POST",
		"path": "/a\"b\\c\nd\x01e\uFFFDé\u2028", "protocol": "HTTP/1.1", "status": 200.0,
		"bytes_in": 220456.0, "bytes_out": 1234.0, "duration_ms": 153.204, "replica": "replica-2",
		"attempts": 2.0, "queued_ms": 4.02, "referer": "http://example.com/", "user_agent": "ua\r\n{\"x\":1}",
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want %d fields", got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestCombinedEscapes(t *testing.T) {
	rec := sample
	rec.Path = "/a\"b\\c\nd é"
	rec.UserAgent = "x\"y"
	got := string(Combined.Append(nil, &rec))
	for _, want := range []string{`"POST /a\x22b\x5Cc\x0Ad \xC3\xA9 HTTP/1.1"`, `"x\x22y"`} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
	if strings.Count(got, "\n") != 1 {
		t.Errorf("line %q is not one line", got)
	}
}

func TestParseFormat(t *testing.T) {
	for _, name := range Formats {
		if _, err := ParseFormat(name); err != nil {
			t.Errorf("ParseFormat(%q): %v", name, err)
		}
	}
	for _, bad := range []string{"", "JSON", "common", "nginx"} {
		if _, err := ParseFormat(bad); err == nil {
			t.Errorf("ParseFormat(%q) accepted it", bad)
		}
	}
}
