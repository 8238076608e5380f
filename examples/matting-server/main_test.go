package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func pngBase64(t *testing.T, img image.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/matting_base64", strings.NewReader(body)))
	return rec
}

func TestMattingErrors(t *testing.T) {
	srv := newServer(2, 0)
	srv.maxBody = 1 << 20
	srv.maxSide = 64
	h := srv.routes()
	small := pngBase64(t, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	huge := pngBase64(t, image.NewRGBA(image.Rect(0, 0, 65, 8)))
	tests := []struct {
		name     string
		method   string
		body     string
		wantCode int
		wantErr  string
	}{
		{"wrong method", http.MethodGet, "", 405, "not allowed"},
		{"malformed json", "POST", `{"image": `, 400, "invalid JSON body"},
		{"not an object", "POST", `[1, 2]`, 400, "invalid JSON body"},
		{"trailing data", "POST", `{"image": "` + small + `"} {}`, 400, "data after the object"},
		{"missing image", "POST", `{"bg": "[1, 2, 3]"}`, 400, `missing "image"`},
		{"empty image", "POST", `{"image": ""}`, 400, `missing "image"`},
		{"image not a string", "POST", `{"image": 12}`, 400, "invalid JSON body"},
		{"bad base64", "POST", `{"image": "not base64!"}`, 400, `invalid base64 in "image"`},
		{"not an image", "POST", `{"image": "` + base64.StdEncoding.EncodeToString([]byte("GIF89a nope")) + `"}`, 400, "not a decodable PNG or JPEG"},
		{"truncated png", "POST", `{"image": "` + small[:len(small)/2] + `"}`, 400, "image"},
		{"image too large", "POST", `{"image": "` + huge + `"}`, 400, "65x8; want 1 to 64 pixels per side"},
		{"bg out of range", "POST", `{"image": "` + small + `", "bg": "[0, 256, 0]"}`, 400, `invalid "bg"`},
		{"bg too short", "POST", `{"image": "` + small + `", "bg": [1, 2]}`, 400, `invalid "bg"`},
		{"bg not integers", "POST", `{"image": "` + small + `", "bg": [1.5, 2, 3]}`, 400, `invalid "bg"`},
		{"bg garbage string", "POST", `{"image": "` + small + `", "bg": "blue"}`, 400, `invalid "bg"`},
		{"bg number", "POST", `{"image": "` + small + `", "bg": 7}`, 400, `invalid "bg"`},
		{"body too large", "POST", `{"image": "` + strings.Repeat("A", 1<<20) + `"}`, 413, "larger than 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/api/matting_base64", strings.NewReader(tc.body)))
			if rec.Code != tc.wantCode {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.wantCode, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var resp struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
			}
			if !strings.Contains(resp.Error, tc.wantErr) || strings.Contains(resp.Error, "\n") {
				t.Errorf("error %q, want one line containing %q", resp.Error, tc.wantErr)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	h := newServer(1, 0).routes()
	tests := []struct {
		method   string
		wantCode int
		wantBody string
	}{
		{http.MethodGet, 200, `{"status":"ok"}`},
		{http.MethodPost, 405, `{"error":"method POST not allowed; use GET"}`},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/health", nil))
		if rec.Code != tc.wantCode || strings.TrimSpace(rec.Body.String()) != tc.wantBody {
			t.Errorf("%s /health = %d %s, want %d %s", tc.method, rec.Code, rec.Body, tc.wantCode, tc.wantBody)
		}
	}
}

func TestMattingRoundTrip(t *testing.T) {
	s := disc(160, 120, 80, 60, 35)
	s.fgColour, s.bgColour, s.noise = flat(red), flat(greyGreen), 6
	src := s.render(3)
	h := newServer(2, 0).routes()
	tests := []struct {
		name string
		bg   string // the "bg" member, or "" to omit it
		want color.RGBA
	}{
		{"bg as JSON string, as the original client sends it", `"[33, 150, 242]"`, blue},
		{"bg as array", `[33,150,242]`, blue},
		{"bg omitted is white", ``, color.RGBA{255, 255, 255, 255}},
		{"bg null is white", `null`, color.RGBA{255, 255, 255, 255}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"image": "` + pngBase64(t, src) + `"`
			if tc.bg != "" {
				body += `, "bg": ` + tc.bg
			}
			rec := post(t, h, body+"}")
			if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, Content-Type %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			out := decodeResult(t, rec.Body.Bytes())
			if out.Bounds() != src.Bounds() {
				t.Fatalf("result is %v, want %v", out.Bounds(), src.Bounds())
			}
			for _, p := range []image.Point{{0, 0}, {159, 0}, {0, 119}, {159, 119}} {
				if got := color.RGBAModel.Convert(out.At(p.X, p.Y)); got != tc.want {
					t.Errorf("corner %v is %v, want bg %v", p, got, tc.want)
				}
			}
			if got, want := color.RGBAModel.Convert(out.At(80, 60)), src.RGBAAt(80, 60); got != want {
				t.Errorf("centre is %v, want the foreground's %v", got, want)
			}
		})
	}
}

func decodeResult(t *testing.T, body []byte) image.Image {
	t.Helper()
	var resp struct{ Result string }
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("response is not JSON: %v", err)
	}
	data, err := base64.StdEncoding.DecodeString(resp.Result)
	if err != nil {
		t.Fatalf("result is not base64: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("result is not a PNG: %v", err)
	}
	return img
}

// TestSample mattes the committed sample portrait the way the original load-test client
// sends it, and checks the backdrop is gone and the face, hair and shirt stay.
func TestSample(t *testing.T) {
	data, err := os.ReadFile("../sample/sample.jpg")
	if err != nil {
		t.Fatal(err)
	}
	body := `{"image": "` + base64.StdEncoding.EncodeToString(data) + `", "bg": "[33, 150, 242]"}`
	rec := post(t, newServer(1, 0).routes(), body)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	out := decodeResult(t, rec.Body.Bytes())
	if out.Bounds().Dx() != 600 || out.Bounds().Dy() != 800 {
		t.Fatalf("result is %v, want 600x800", out.Bounds())
	}
	if path := os.Getenv("MATTE_SAMPLE_OUT"); path != "" {
		var buf bytes.Buffer
		png.Encode(&buf, out)
		os.WriteFile(path, buf.Bytes(), 0o644)
	}
	isBg := func(p image.Point) bool { return color.RGBAModel.Convert(out.At(p.X, p.Y)) == blue }
	tests := []struct {
		name string
		at   []image.Point
		bg   bool
	}{
		{"backdrop", []image.Point{{5, 5}, {590, 10}, {60, 400}, {540, 400}, {10, 790}, {590, 790}, {100, 560}, {500, 560}, {220, 470}, {380, 470}}, true},
		{"hair", []image.Point{{300, 130}, {180, 300}}, false},
		{"face", []image.Point{{300, 330}, {250, 360}}, false},
		{"neck", []image.Point{{300, 480}}, false},
		{"collar trim", []image.Point{{300, 624}}, false},
		{"shirt", []image.Point{{300, 700}, {100, 790}, {500, 790}}, false},
	}
	for _, tc := range tests {
		for _, p := range tc.at {
			if isBg(p) != tc.bg {
				t.Errorf("%s at %v: background is %v, want %v", tc.name, p, isBg(p), tc.bg)
			}
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		port    string
		want    config
		wantErr string
	}{
		{"defaults", nil, "", config{addr: "127.0.0.1:9111", workers: 3}, ""},
		{"PORT", nil, "9200", config{addr: "127.0.0.1:9200", workers: 3}, ""},
		{"addr wins over PORT", []string{"-addr", ":8000", "-delay", "50ms", "-workers", "1"}, "9200", config{addr: ":8000", delay: 50 * time.Millisecond, workers: 1}, ""},
		{"bad PORT", nil, "http", config{}, `PORT is "http"`},
		{"PORT out of range", nil, "70000", config{}, `PORT is "70000"`},
		{"zero workers", []string{"-workers", "0"}, "", config{}, "-workers is 0"},
		{"negative delay", []string{"-delay", "-1s"}, "", config{}, "-delay is -1s"},
		{"stray argument", []string{"serve"}, "", config{}, `unexpected argument "serve"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-workers", "3"}, tc.args...)
			got, err := parseFlags(args, func(k string) string {
				if k == "PORT" {
					return tc.port
				}
				return ""
			}, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestGracefulShutdown cancels the server while a slow request is in flight:
// the request must still succeed and serve must return nil.
func TestGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, newServer(1, 300*time.Millisecond).routes(), &log) }()

	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	body := `{"image": "` + pngBase64(t, img) + `"}`
	type result struct {
		code int
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/api/matting_base64", "application/json", strings.NewReader(body))
		if err != nil {
			resc <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resc <- result{code: resp.StatusCode}
	}()
	time.Sleep(100 * time.Millisecond) // the request is now in its delay
	cancel()
	if r := <-resc; r.err != nil || r.code != 200 {
		t.Errorf("in-flight request: status %d, error %v; want 200", r.code, r.err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
	if want := "matting-server listening on " + ln.Addr().String() + "\n"; log.String() != want {
		t.Errorf("log %q, want %q", log.String(), want)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/health"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}
