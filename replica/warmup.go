package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Warmup is a request sent to a new replica process once it is ready and
// before it gets traffic, so that no client pays for its first inference:
// graph optimisation, memory arenas, lazy CUDA initialisation.
type Warmup struct {
	Method string
	// Target is the path, with its query if any: "/api/predict?warm=1".
	Target string
	Header http.Header
	// Host, when set, is the request's Host header; else the replica's
	// address.
	Host string
	Body []byte
}

// warmupFile is a warm-up file as written: JSON, so that a body can be
// written as JSON too.
//
//	{
//	  "method": "POST",
//	  "path": "/api/matting_base64",
//	  "headers": {"Content-Type": "application/json"},
//	  "body_file": "warmup-body.json"
//	}
type warmupFile struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers"`
	Body     json.RawMessage   `json:"body"`
	BodyFile string            `json:"body_file"`
}

// LoadWarmup reads a warm-up file: a JSON object with "path" (required,
// starting with /), "method" (default GET, or POST when there is a body),
// "headers" (an object of strings), and at most one of "body" (a string,
// sent as it is, or any other JSON value, sent as JSON with Content-Type
// application/json unless headers say otherwise) and "body_file" (a file
// whose bytes are the body, relative to the warm-up file's directory).
// Unknown fields are refused, so that a misspelt one is not ignored. The
// error says what is wrong in one line, without the file's name.
func LoadWarmup(path string) (*Warmup, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f warmupFile
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(b, err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value; want one object")
	}
	w := &Warmup{Method: f.Method, Target: f.Path, Header: http.Header{}}
	if f.Path == "" {
		return nil, errors.New(`"path" is missing: want e.g. "path": "/predict"`)
	}
	if u, err := url.ParseRequestURI(f.Path); err != nil || !strings.HasPrefix(f.Path, "/") || u.Host != "" {
		return nil, fmt.Errorf(`"path" %q is not a path starting with /`, f.Path)
	}
	for k, v := range f.Headers {
		if strings.EqualFold(k, "Host") {
			w.Host = v
			continue
		}
		w.Header.Set(k, v)
	}
	hasBody := len(f.Body) > 0 && string(f.Body) != "null"
	switch {
	case hasBody && f.BodyFile != "":
		return nil, errors.New(`both "body" and "body_file": give one`)
	case f.BodyFile != "":
		p := f.BodyFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		if w.Body, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf(`"body_file" %s: %v`, f.BodyFile, fileError(err))
		}
	case hasBody && f.Body[0] == '"':
		var s string
		if err := json.Unmarshal(f.Body, &s); err != nil {
			return nil, fmt.Errorf(`"body": %v`, err)
		}
		w.Body = []byte(s)
	case hasBody:
		var buf bytes.Buffer
		if err := json.Compact(&buf, f.Body); err != nil {
			return nil, fmt.Errorf(`"body": %v`, err)
		}
		w.Body = buf.Bytes()
		if w.Header.Get("Content-Type") == "" {
			w.Header.Set("Content-Type", "application/json")
		}
	}
	if w.Method == "" {
		w.Method = http.MethodGet
		if w.Body != nil {
			w.Method = http.MethodPost
		}
	}
	if _, err := http.NewRequest(w.Method, "http://127.0.0.1"+w.Target, nil); err != nil {
		return nil, fmt.Errorf(`"method" %q is not an HTTP method`, w.Method)
	}
	if w.Header.Get("User-Agent") == "" {
		w.Header.Set("User-Agent", "mattingctl-warmup")
	}
	return w, nil
}

// String names the request as a log reads it: "POST /predict".
func (w *Warmup) String() string { return w.Method + " " + w.Target }

// fileError is err without the path an *fs.PathError repeats.
func fileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// jsonError says where in b a decoding error is, by line.
func jsonError(b []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("not valid JSON at line %d: %v", 1+bytes.Count(b[:syn.Offset], []byte("\n")), err)
	case errors.As(err, &typ):
		line := 1 + bytes.Count(b[:min(int(typ.Offset), len(b))], []byte("\n"))
		switch field, _, _ := strings.Cut(typ.Field, "."); field {
		case "":
			return fmt.Errorf("must be a JSON object, not a JSON %s", typ.Value)
		case "headers":
			return fmt.Errorf(`"headers" must be an object of strings, as {"Content-Type": "application/json"} (line %d)`, line)
		default:
			return fmt.Errorf("%q must be a string, not a JSON %s (line %d)", field, typ.Value, line)
		}
	case errors.Is(err, io.EOF):
		return errors.New(`empty: want a JSON object such as {"path": "/predict"}`)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return fmt.Errorf("%s (the fields are method, path, headers, body and body_file)", strings.TrimPrefix(err.Error(), "json: "))
	}
	return err
}

// warmupClient sends warm-ups on connections of their own, following no
// redirects: the answer of the replica is what counts.
var warmupClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// WarmupStatusError is a warm-up's 5xx answer.
type WarmupStatusError struct {
	Code int
	// Body is the start of the answer's body, for the log.
	Body string
}

func (e *WarmupStatusError) Error() string {
	s := fmt.Sprintf("answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Send sends the warm-up to the replica at addr (host:port), over h2c
// (HTTP/2 with prior knowledge) when h2c is set, else HTTP/1.1, and reads
// the whole answer. It returns the answer's status; a 5xx is a
// *WarmupStatusError.
func (w *Warmup) Send(ctx context.Context, addr string, h2c bool) (int, error) {
	req, err := http.NewRequestWithContext(ctx, w.Method, "http://"+addr+w.Target, bytes.NewReader(w.Body))
	if err != nil {
		return 0, err
	}
	if w.Body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	req.Header = w.Header.Clone()
	if w.Host != "" {
		req.Host = w.Host
	}
	client := warmupClient
	if h2c {
		client = probeH2CClient // the same connection rules: its own, no redirects
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	head := make([]byte, 200)
	n, _ := io.ReadFull(resp.Body, head)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode >= 500 {
		body := strings.Join(strings.Fields(string(head[:n])), " ")
		return resp.StatusCode, &WarmupStatusError{Code: resp.StatusCode, Body: body}
	}
	return resp.StatusCode, nil
}
