package replica

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadWarmup(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "img.json", `{"image":"abc"}`)
	for _, tc := range []struct {
		name, text                  string
		method, target, ctype, body string
		host                        string
	}{
		{name: "get", text: `{"path": "/health?deep=1"}`, method: "GET", target: "/health?deep=1"},
		{name: "string body", text: `{"path": "/p", "body": "a=1", "headers": {"Content-Type": "text/plain"}}`,
			method: "POST", target: "/p", ctype: "text/plain", body: "a=1"},
		{name: "json body", text: "{\"path\": \"/p\", \"method\": \"PUT\", \"body\": {\"image\": \"x\",\n \"n\": [1, 2]}}",
			method: "PUT", target: "/p", ctype: "application/json", body: `{"image":"x","n":[1,2]}`},
		{name: "body file", text: `{"path": "/api/matting_base64", "body_file": "img.json", "headers": {"Content-Type": "application/json", "Host": "model.local"}}`,
			method: "POST", target: "/api/matting_base64", ctype: "application/json", body: `{"image":"abc"}`, host: "model.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := LoadWarmup(writeFile(t, dir, "w.json", tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if w.Method != tc.method || w.Target != tc.target || w.Header.Get("Content-Type") != tc.ctype || string(w.Body) != tc.body || w.Host != tc.host {
				t.Errorf("got %s %s ctype %q body %q host %q", w.Method, w.Target, w.Header.Get("Content-Type"), w.Body, w.Host)
			}
		})
	}
}

func TestLoadWarmupRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "", "empty"},
		{"not json", "{\n\"path\": /x}", "not valid JSON at line 2"},
		{"no path", `{"method": "GET"}`, `"path" is missing`},
		{"relative path", `{"path": "predict"}`, `"path" "predict" is not a path`},
		{"absolute url", `{"path": "http://example.com/x"}`, "is not a path"},
		{"unknown field", `{"path": "/x", "bdy": "a"}`, `unknown field "bdy" (the fields are`},
		{"both bodies", `{"path": "/x", "body": "a", "body_file": "b"}`, `both "body" and "body_file"`},
		{"missing body file", `{"path": "/x", "body_file": "nope.bin"}`, `"body_file" nope.bin: no such file or directory`},
		{"bad method", `{"path": "/x", "method": "GET /y"}`, `"method" "GET /y" is not an HTTP method`},
		{"headers not strings", `{"path": "/x", "headers": {"A": 1}}`, `must be an object of strings`},
		{"array", `[1]`, "must be a JSON object"},
		{"two values", `{"path": "/x"} {}`, "more than one JSON value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadWarmup(writeFile(t, dir, "w.json", tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), dir) {
				t.Errorf("error %q is not one line without the file name", err)
			}
		})
	}
	if _, err := LoadWarmup(filepath.Join(dir, "absent.json")); err == nil || err.Error() != "no such file or directory" {
		t.Errorf("absent file: %v", err)
	}
}

func TestWarmupSend(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Host+" "+r.UserAgent()+" "+string(b))
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "model not loaded\nat all", http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("missing") != "" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	w := &Warmup{Method: "POST", Target: "/p?a=1", Header: http.Header{"User-Agent": {"mattingctl-warmup"}}, Host: "h.local", Body: []byte("img")}
	if code, err := w.Send(context.Background(), addr, false); err != nil || code != 200 {
		t.Fatalf("Send: %d %v", code, err)
	}
	if want := "POST /p?a=1 h.local mattingctl-warmup img"; got[0] != want {
		t.Errorf("server got %q, want %q", got[0], want)
	}
	w.Target = "/p?missing=1"
	if code, err := w.Send(context.Background(), addr, false); err != nil || code != 404 {
		t.Errorf("a 404: %d %v, want 404 and no error", code, err)
	}
	w.Target = "/p?fail=1"
	code, err := w.Send(context.Background(), addr, false)
	var se *WarmupStatusError
	if !errors.As(err, &se) || code != 500 || err.Error() != "answered 500 Internal Server Error: model not loaded at all" {
		t.Errorf("a 500: %d %v", code, err)
	}
}

// TestWarmupSendH2C: a replica that speaks only h2c is warmed up in h2c.
func TestWarmupSendH2C(t *testing.T) {
	var proto string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proto = r.Proto }))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	w := &Warmup{Method: "GET", Target: "/"}
	if _, err := w.Send(context.Background(), addr, false); err == nil {
		t.Fatal("an HTTP/1.1 warm-up of an h2c-only replica succeeded; the test server is not h2c-only")
	}
	if code, err := w.Send(context.Background(), addr, true); err != nil || code != 200 || proto != "HTTP/2.0" {
		t.Fatalf("h2c warm-up: %d %v over %q, want 200 over HTTP/2.0", code, err, proto)
	}
}
