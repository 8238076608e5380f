package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the decoder for image.Decode
	"image/png"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/mattingctl/mattingctl/examples/matte"
)

// server serves the matting API.
type server struct {
	// workers bounds the matting requests processed at once, each held
	// an extra delay to model a slower model.
	workers *matte.Workers
	// maxBody is the largest request body accepted, in bytes.
	maxBody int64
	// maxSide is the largest accepted image width or height, in pixels.
	maxSide int
	// logf reports server-side failures.
	logf func(format string, args ...any)
}

func newServer(workers int, delay time.Duration) *server {
	return &server{
		workers: matte.NewWorkers(workers, delay),
		maxBody: 50 << 20,
		maxSide: 4096,
		logf:    log.Printf,
	}
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/matting_base64", s.handleMatting)
	mux.HandleFunc("/health", s.handleHealth)
	return mux
}

// defaultBg is the background used when a request has no "bg".
var defaultBg = color.RGBA{255, 255, 255, 255}

type mattingRequest struct {
	Image *string         `json:"image"`
	Bg    json.RawMessage `json:"bg"`
}

// errStatus is a request error with its HTTP status.
type errStatus struct {
	code int
	msg  string
}

func (e *errStatus) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &errStatus{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func (s *server) handleMatting(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed; use POST"})
		return
	}
	data, bg, err := s.parse(w, r)
	if err == nil {
		if s.workers.Acquire(r.Context()) != nil {
			return // the client has gone; nobody reads a reply
		}
		data, err = s.process(data, bg)
		s.workers.Release()
	}
	var es *errStatus
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"result": base64.StdEncoding.EncodeToString(data)})
	case errors.As(err, &es):
		writeJSON(w, es.code, map[string]string{"error": es.msg})
	default:
		s.logf("matting request: %v", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	}
}

// process decodes an image file, mattes it onto bg and returns the result
// as a PNG file. It runs in a worker slot: it holds the decoded image.
func (s *server) process(data []byte, bg color.RGBA) ([]byte, error) {
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, badRequest(`"image" is not a decodable %s: %v`, strings.ToUpper(format), err)
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, matte.Matte(img, bg)); err != nil {
		return nil, fmt.Errorf("encoding result png: %w", err)
	}
	return buf.Bytes(), nil
}

// parse reads and validates a matting request and returns its image file,
// checked to be a PNG or JPEG of acceptable size, and background colour.
func (s *server) parse(w http.ResponseWriter, r *http.Request) ([]byte, color.RGBA, error) {
	var req mattingRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, color.RGBA{}, &errStatus{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)}
		}
		return nil, color.RGBA{}, badRequest("invalid JSON body: %v", err)
	}
	if dec.More() {
		return nil, color.RGBA{}, badRequest("invalid JSON body: data after the object")
	}
	bg, err := parseBg(req.Bg)
	if err != nil {
		return nil, color.RGBA{}, err
	}
	if req.Image == nil || *req.Image == "" {
		return nil, color.RGBA{}, badRequest(`missing "image": want the base64 of a PNG or JPEG file`)
	}
	b64 := *req.Image
	if i := strings.Index(b64, ";base64,"); strings.HasPrefix(b64, "data:") && i >= 0 {
		b64 = b64[i+len(";base64,"):]
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, color.RGBA{}, badRequest(`invalid base64 in "image": %v`, err)
	}
	return data, bg, s.checkImage(data)
}

// checkImage reads an image file's header and checks its format and size
// before anything decodes it, so a small file cannot claim a huge canvas.
func (s *server) checkImage(data []byte) error {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return badRequest(`"image" is not a decodable PNG or JPEG: %v`, err)
	}
	if cfg.Width > s.maxSide || cfg.Height > s.maxSide || cfg.Width == 0 || cfg.Height == 0 {
		return badRequest(`"image" is %dx%d; want 1 to %d pixels per side`, cfg.Width, cfg.Height, s.maxSide)
	}
	return nil
}

// parseBg reads "bg": absent or null means white; otherwise a JSON array of
// three integers 0-255, either directly or inside a JSON string, as the
// original Python client sends it ("[33, 150, 242]").
func parseBg(raw json.RawMessage) (color.RGBA, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return defaultBg, nil
	}
	const want = `want 3 integers 0-255 like [33, 150, 242]`
	var inner string
	if json.Unmarshal(raw, &inner) == nil {
		raw = json.RawMessage(inner)
	}
	var rgb []int
	if err := json.Unmarshal(raw, &rgb); err != nil || len(rgb) != 3 {
		return color.RGBA{}, badRequest(`invalid "bg" %s: %s`, clip(string(raw), 40), want)
	}
	for _, v := range rgb {
		if v < 0 || v > 255 {
			return color.RGBA{}, badRequest(`invalid "bg" %s: %s`, clip(string(raw), 40), want)
		}
	}
	return color.RGBA{uint8(rgb[0]), uint8(rgb[1]), uint8(rgb[2]), 255}, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed; use GET"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, _ := json.Marshal(v) // maps of strings always marshal
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
