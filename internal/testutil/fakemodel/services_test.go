package main

import (
	"testing"
	"time"
)

func TestServiceOf(t *testing.T) {
	for _, c := range []struct {
		list    string
		replica int
		want    time.Duration
	}{
		{"50ms,500ms", 1, 50 * time.Millisecond}, {"50ms,500ms", 2, 500 * time.Millisecond},
		{"50ms,500ms", 3, 50 * time.Millisecond}, {"50ms, 200ms", 2, 200 * time.Millisecond},
		{"7ms", 0, 7 * time.Millisecond},
	} {
		if got, err := serviceOf(c.list, c.replica); err != nil || got != c.want {
			t.Errorf("serviceOf(%q, %d) = %s, %v; want %s", c.list, c.replica, got, err, c.want)
		}
	}
	if _, err := serviceOf("50ms,fast", 2); err == nil {
		t.Error(`"fast" parsed as a duration`)
	}
}
