package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxRequestBody bounds a control request's body; the largest real one is
// a few dozen bytes.
const maxRequestBody = 4096

// decodeRequest reads r's body as exactly one JSON object into v, refusing
// unknown fields and anything after the object. On failure it answers 400,
// naming what, and returns false. Checking for missing fields is left to
// the caller, who knows which are required (pointer fields tell).
func decodeRequest(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	return decode(w, http.MaxBytesReader(w, r.Body, maxRequestBody), what, v)
}

// decodeOptional is decodeRequest for an endpoint whose body may be left
// out: an empty body leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("bad %s request: %v", what, err)})
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	return decode(w, bytes.NewReader(b), what, v)
}

// decode reads body as exactly one JSON object into v, answering 400 on
// failure.
func decode(w http.ResponseWriter, body io.Reader, what string, v any) bool {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the body is empty")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("bad %s request: %v", what, err)})
		return false
	}
	return true
}

// noBody answers 400 and returns false if r, to an endpoint that takes no
// body, has one: a client sending fields expects them to mean something.
func noBody(w http.ResponseWriter, r *http.Request, what string) bool {
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, maxRequestBody))
	if n > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("bad %s request: it takes no body", what)})
		return false
	}
	return true
}
