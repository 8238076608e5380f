package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParseBatchCost(t *testing.T) {
	if a, b, err := parseBatchCost("50ms, 5ms"); err != nil || a != 50*time.Millisecond || b != 5*time.Millisecond {
		t.Errorf("50ms, 5ms: %s %s %v", a, b, err)
	}
	for _, bad := range []string{"50ms", "50ms,x", "-1ms,1ms", ""} {
		if _, _, err := parseBatchCost(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestDeviceBatch: a batch of 3 takes one pass, A + 3·B, and answers each
// input's id in order; an input that is no object gets its own error.
func TestDeviceBatch(t *testing.T) {
	d := &device{fixed: 30 * time.Millisecond, each: 10 * time.Millisecond}
	w := httptest.NewRecorder()
	start := time.Now()
	d.serveBatch(w, httptest.NewRequest(http.MethodPost, "/batch", strings.NewReader(`[{"id":"a"},7,{"id":3}]`)))
	took := time.Since(start)
	var out []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out) != 3 {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	if out[0]["id"] != "a" || out[0]["batch"] != 3.0 || out[1]["status"] != 400.0 || out[2]["id"] != 3.0 {
		t.Errorf("answers %v", out)
	}
	if took < 60*time.Millisecond {
		t.Errorf("took %s; want A + 3·B = 60ms", took)
	}
}
