package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, -1},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.5, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"max of 1..100", ms(hundred...), 1, 100 * time.Millisecond},
		{"p50 of four", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of four", ms(1, 2, 3, 4), 0.99, 4 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummary(t *testing.T) {
	results := []result{
		{latency: 30 * time.Millisecond},
		{latency: 10 * time.Millisecond},
		{latency: 250 * time.Millisecond},
		{err: io.EOF},
	}
	got := summary(results, 2*time.Second)
	want := "requests=4 ok=3 failed=1 throughput=1.5 req/s p50=30ms p99=250ms max=250ms"
	if got != want {
		t.Errorf("summary =\n%s\nwant\n%s", got, want)
	}
	if got := summary([]result{{err: io.EOF}}, time.Second); !strings.HasSuffix(got, "p50=- p99=- max=-") {
		t.Errorf("summary with no successes = %s", got)
	}
}

func TestLoadPayloads(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"b.jpg": "JPEG", "a.PNG": "PNG", "notes.txt": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	empty := t.TempDir()
	tests := []struct {
		name      string
		path, bg  string
		wantNames []string
		wantErr   string
	}{
		{"directory", dir, "[33, 150, 242]", []string{"a.PNG", "b.jpg"}, ""},
		{"file", filepath.Join(dir, "b.jpg"), "[0,0,0]", []string{"b.jpg"}, ""},
		{"missing", filepath.Join(dir, "nope.jpg"), "[0,0,0]", nil, "reading -image"},
		{"no images", empty, "[0,0,0]", nil, "no .png, .jpg or .jpeg files in"},
		{"bad bg", dir, "blue", nil, `-bg "blue"`},
		{"bg out of range", dir, "[1, 2, 300]", nil, `-bg "[1, 2, 300]"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadPayloads(tc.path, tc.bg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.wantNames) {
				t.Fatalf("got %d payloads, want %v", len(got), tc.wantNames)
			}
			for i, p := range got {
				var body struct{ Image, Bg string }
				if err := json.Unmarshal(p.body, &body); err != nil {
					t.Fatal(err)
				}
				data, _ := base64.StdEncoding.DecodeString(body.Image)
				want, _ := os.ReadFile(filepath.Join(dir, tc.wantNames[i]))
				if p.name != tc.wantNames[i] || !bytes.Equal(data, want) || body.Bg != tc.bg {
					t.Errorf("payload %d = %s %q bg %q, want %s %q bg %q", i, p.name, data, body.Bg, tc.wantNames[i], want, tc.bg)
				}
			}
		})
	}
}

// fakeServer answers like a matting server; reply chooses per request.
func fakeServer(t *testing.T, reply func(n int64, w http.ResponseWriter)) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Image, Bg string }
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&req) != nil || req.Image == "" {
			http.Error(w, `{"error": "bad request from client"}`, http.StatusBadRequest)
			return
		}
		reply(n.Add(1), w)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func pngResult(t *testing.T) string {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 3, 2))); err != nil {
		t.Fatal(err)
	}
	return `{"result": "` + base64.StdEncoding.EncodeToString(buf.Bytes()) + `"}`
}

func TestSend(t *testing.T) {
	good := pngResult(t)
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"ok", 200, good, ""},
		{"server error", 500, `{"error": "model crashed"}`, "status 500: model crashed"},
		{"plain text error", 502, "Bad Gateway\n", "status 502: Bad Gateway"},
		{"no result", 200, `{"status": "ok"}`, `response has no "result"`},
		{"not json", 200, `<html>`, `response has no "result"`},
		{"result not base64", 200, `{"result": "%%%"}`, "result is not base64"},
		{"result not png", 200, `{"result": "` + base64.StdEncoding.EncodeToString([]byte("GIF89a")) + `"}`, "result is not a PNG"},
	}
	payloads, err := loadPayloads("../sample/sample.jpg", "[33, 150, 242]")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeServer(t, func(_ int64, w http.ResponseWriter) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			img, lat, err := send(context.Background(), srv.Client(), srv.URL, payloads[0])
			if tc.wantErr == "" {
				if err != nil || len(img) == 0 || lat <= 0 {
					t.Fatalf("got %d bytes, latency %v, error %v", len(img), lat, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr && !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRealMain runs the whole client against a server that fails every
// third request and checks the summary, the exit code and the written files.
func TestRealMain(t *testing.T) {
	good := pngResult(t)
	srv := fakeServer(t, func(n int64, w http.ResponseWriter) {
		if n%3 == 0 {
			w.WriteHeader(503)
			io.WriteString(w, `{"error": "busy"}`)
			return
		}
		io.WriteString(w, good)
	})
	dir := t.TempDir()
	img := filepath.Join("..", "sample", "sample.jpg")
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantOut   []string
		wantFiles int
	}{
		{"one request to a file", []string{"-n", "1", "-out", filepath.Join(dir, "one.png")}, 0,
			[]string{"requests=1 ok=1 failed=0 "}, 1},
		{"load with failures into a directory", []string{"-n", "9", "-c", "3", "-out", filepath.Join(dir, "many") + "/"}, 1,
			[]string{"requests=9 ok=6 failed=3 ", "error: 3x status 503: busy"}, 6},
		{"bad flag", []string{"-n", "0"}, 2, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"-url", srv.URL, "-image", img}, tc.args...)
			code := realMain(context.Background(), args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, tc.wantCode, &stdout, &stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			if tc.wantFiles == 0 {
				return
			}
			out := tc.args[len(tc.args)-1]
			files := []string{out}
			if strings.HasSuffix(out, "/") {
				files, _ = filepath.Glob(filepath.Join(out, "*_sample.png"))
			}
			if len(files) != tc.wantFiles {
				t.Fatalf("wrote %v, want %d files", files, tc.wantFiles)
			}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := png.Decode(bytes.NewReader(data)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
}

// TestDefaultImageIsBuiltIn: with no -image the client sends the embedded
// sample, so it works from any directory.
func TestDefaultImageIsBuiltIn(t *testing.T) {
	t.Chdir(t.TempDir())
	payloads, err := loadPayloads("", "[33, 150, 242]")
	if err != nil || len(payloads) != 1 || payloads[0].name != "sample.jpg" || len(payloads[0].body) < 200<<10 {
		t.Fatalf("default payload: %v, %d payloads", err, len(payloads))
	}
}
